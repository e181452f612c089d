import Models
import ServiceKit

@main
struct Main {
    static func main() async throws {
        let app = try await buildContacts(config: try ServiceConfig(service: .contacts))
        try await app.runService()
    }
}
