import Models
import ServiceKit

@main
struct Main {
    static func main() async throws {
        let app = try await buildAccountability(config: try ServiceConfig(service: .accountability))
        try await app.runService()
    }
}
