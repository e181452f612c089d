import Hummingbird
import Models
import ServiceKit

/// Wires the accountability service. Until its own features land it keeps only the kit's routes and the
/// directory and contact replicas its features will read.
func buildAccountability(config: ServiceConfig) async throws -> some ApplicationProtocol {
    try await ServiceKit.buildApplication(config: config) { _, _ in
        ServiceParts(migrations: DirectoryReplica.migrations + ContactReplica.migrations + DirectoryReplica.userPreferences
                         + DirectoryReplica.userLender + ContactReplica.taskMigrations
                         + DirectoryReplica.entityAddress,
                     eventHandlers: DirectoryReplica.handlers(for: .accountability) + ContactReplica.handlers(for: .accountability))
    }
}
