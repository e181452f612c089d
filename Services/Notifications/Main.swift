import Models
import ServiceKit

@main
struct Main {
    static func main() async throws {
        let app = try await buildNotifications(config: try ServiceConfig(service: .notifications))
        try await app.runService()
    }
}
