import Models
import ServiceKit

@main
struct Main {
    static func main() async throws {
        let app = try await buildAutomation(config: try ServiceConfig(service: .automation))
        try await app.runService()
    }
}
