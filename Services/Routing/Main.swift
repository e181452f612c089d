import Models
import ServiceKit

@main
struct Main {
    static func main() async throws {
        let app = try await buildRouting(config: try ServiceConfig(service: .routing))
        try await app.runService()
    }
}
