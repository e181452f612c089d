import Hummingbird
import Models
import ServiceKit

/// Wires the smartplans service. Until its own features land it keeps only the kit's routes and the
/// directory and contact replicas its features will read.
func buildSmartPlans(config: ServiceConfig) async throws -> some ApplicationProtocol {
    try await ServiceKit.buildApplication(config: config) { _, _ in
        ServiceParts(migrations: DirectoryReplica.migrations + ContactReplica.migrations + DirectoryReplica.userPreferences
                         + DirectoryReplica.userLender,
                     eventHandlers: DirectoryReplica.handlers(for: .smartplans) + ContactReplica.handlers(for: .smartplans))
    }
}
