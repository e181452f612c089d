import Foundation
import Hummingbird
import Models
import ServiceKit

/// Wires the contacts service: the directory (companies, entities, users, logins) and, later,
/// the CRM.
func buildContacts(config: ServiceConfig) async throws -> some ApplicationProtocol {
    let cost = config.reader.int(forKey: "bcrypt.cost", default: 12)
    guard (4...16).contains(cost) else { throw ConfigError(variable: "BCRYPT_COST", problem: "must be from 4 to 16") }
    let platformAdmin = try platformAdminSettings(config)
    let importMaxBytes = config.reader.int(forKey: "import.max.bytes", default: 32 << 20)
    guard (1024...(256 << 20)).contains(importMaxBytes) else { throw ConfigError(variable: "IMPORT_MAX_BYTES", problem: "must be from 1 KiB to 256 MiB") }
    let hasher = try await PasswordHasher(cost: UInt8(cost))
    return try await ServiceKit.buildApplication(config: config) { environment, routes in
        let store = DirectoryStore(client: environment.client, outbox: environment.outbox, logger: environment.logger)
        let access = Access(store: store)
        AuthController(store: store, tokens: environment.tokens, hasher: hasher, clock: environment.clock)
            .register(open: routes.open, authenticated: routes.authenticated)
        CompaniesController(store: store, tokens: environment.tokens, hasher: hasher, clock: environment.clock).register(on: routes.authenticated)
        EntitiesController(store: store, access: access, clock: environment.clock).register(on: routes.authenticated)
        UsersController(store: store, access: access, hasher: hasher, clock: environment.clock).register(on: routes.authenticated)

        let clock = environment.clock
        let contacts = ContactStore(client: environment.client, outbox: environment.outbox, logger: environment.logger)
        let crm = CRMStore(client: environment.client, contacts: contacts, outbox: environment.outbox, logger: environment.logger)
        let writer = ContactWriter(store: contacts, outbox: environment.outbox, clock: clock)
        let contactAccess = ContactAccess(access: access, contacts: contacts, directory: store)
        ContactsController(store: contacts, writer: writer, access: contactAccess, clock: clock).register(on: routes.authenticated)
        LeadsController(crm: crm, contacts: contacts, writer: writer, access: contactAccess, clock: clock)
            .register(open: routes.open, authenticated: routes.authenticated)
        ImportController(contacts: contacts, directory: store, access: contactAccess, outbox: environment.outbox, clock: clock,
                         maxBytes: importMaxBytes).register(on: routes.authenticated)
        ActivityController(contacts: contacts, crm: crm, outbox: environment.outbox, access: contactAccess, clock: clock)
            .register(on: routes.authenticated)
        PondsController(crm: crm, contacts: contacts, writer: writer, access: contactAccess, clock: clock).register(on: routes.authenticated)
        TransactionsController(crm: crm, contacts: contacts, writer: writer, access: contactAccess, clock: clock)
            .register(open: routes.open, authenticated: routes.authenticated)
        var parts = ServiceParts(migrations: ContactsMigrations.all,
                                 eventHandlers: [MessageTimeline(contacts: contacts, outbox: environment.outbox).handler])
        if let platformAdmin {
            parts.afterMigrations.append {
                try await store.upsertPlatformAdmin(email: platformAdmin.email, passwordHash: try await hasher.hash(platformAdmin.password),
                                                    now: environment.clock.now)
            }
        }
        return parts
    }
}

/// `PLATFORM_ADMIN_EMAIL` and `PLATFORM_ADMIN_PASSWORD` name the operator who creates companies.
private func platformAdminSettings(_ config: ServiceConfig) throws -> (email: String, password: String)? {
    let email = config.reader.string(forKey: "platform.admin.email")
    let password = config.reader.string(forKey: "platform.admin.password", isSecret: true)
    switch (email, password) {
    case (nil, nil):
        return nil
    case (let email?, let password?):
        guard let address = EmailAddress(email) else { throw ConfigError(variable: "PLATFORM_ADMIN_EMAIL", problem: "is not an e-mail address") }
        guard password.count >= 12, password.utf8.count <= 72 else {
            throw ConfigError(variable: "PLATFORM_ADMIN_PASSWORD", problem: "must be 12 to 72 bytes long")
        }
        return (address.value, password)
    case (nil, _):
        throw ConfigError(variable: "PLATFORM_ADMIN_EMAIL", problem: "is required when PLATFORM_ADMIN_PASSWORD is set")
    case (_, nil):
        throw ConfigError(variable: "PLATFORM_ADMIN_PASSWORD", problem: "is required when PLATFORM_ADMIN_EMAIL is set")
    }
}
