import Models
import ServiceKit

@main
struct Main {
    static func main() async throws {
        let app = try await buildSmartPlans(config: try ServiceConfig(service: .smartplans))
        try await app.runService()
    }
}
