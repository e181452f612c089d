import Foundation
import Hummingbird
import Models
import PostgresNIO
import ServiceKit

/// `POST /v1/companies`: a platform admin creates a brokerage, its root entity and first admin.
struct CompaniesController {
    let store: DirectoryStore
    let tokens: TokenService
    let hasher: PasswordHasher
    let clock: any ServiceClock

    struct NewAdmin: Decodable {
        var firstName: String
        var lastName: String
        var email: EmailAddress
        var password: String
        var mobilePhone: PhoneNumber?
    }

    struct NewCompany: Decodable {
        var name: String
        var timeZone: String
        var officeHours: [OfficeHoursDay]?
        var bypassListingAgent: Bool?
        var admin: NewAdmin
    }

    struct Created: Encodable, Sendable {
        var company: Company
        var rootEntity: Entity
        var admin: User
        var adminToken: String
    }

    func register(on group: RouterGroup<AppContext>) {
        group.post("/v1/companies") { request, context -> JSONResponse<Created> in
            try context.requireIdentity().require(.platformAdmin)
            let input = try await request.decodeJSON(as: NewCompany.self, context: context)
            let name = try DirectoryRules.name(input.name, field: "name")
            let timeZone = try DirectoryRules.timeZone(input.timeZone)
            let hours = try DirectoryRules.officeHours(input.officeHours ?? OfficeHoursDay.standardWeek)
            let firstName = try DirectoryRules.name(input.admin.firstName, field: "admin.firstName")
            let lastName = try DirectoryRules.name(input.admin.lastName, field: "admin.lastName")
            let password = try DirectoryRules.password(input.admin.password, field: "admin.password")
            let now = clock.now
            let company = Company(id: UUID.random(), name: name, bypassListingAgent: input.bypassListingAgent ?? false, createdAt: now)
            let root = Entity(id: UUID.random(), companyId: company.id, parentId: nil, kind: .company, name: name, timeZone: timeZone,
                              officeHours: hours, version: 1, createdAt: now, updatedAt: now)
            let admin = User(id: UUID.random(), companyId: company.id, role: .companyAdmin, entityIds: [root.id], firstName: firstName,
                             lastName: lastName, email: input.admin.email.value, mobilePhone: input.admin.mobilePhone?.e164,
                             timeZone: timeZone, rotation: Rotation(inRotation: false), prefersPush: false, active: true,
                             version: 1, createdAt: now, updatedAt: now)
            do {
                try await store.createCompany(company, root: root, admin: admin, passwordHash: try await hasher.hash(password))
            } catch let error as PSQLError where error.isUniqueViolation {
                throw APIError(.conflict, code: "email_taken", message: "a user with this e-mail already exists", field: "admin.email")
            }
            let token = try await tokens.issue(subject: admin.id.lowercasedString, companyId: company.id, role: .companyAdmin,
                                               entityIds: [root.id], lifetime: AuthController.tokenLifetime)
            return JSONResponse(.created, Created(company: company, rootEntity: root, admin: admin, adminToken: token))
        }
    }
}
