import Hummingbird
import Models
import ServiceKit

/// Wires the routing service. Until its own features land it keeps the kit's routes, the
/// directory and contact replicas its features will read, and the keys pressed on its calls.
func buildRouting(config: ServiceConfig) async throws -> some ApplicationProtocol {
    try await ServiceKit.buildApplication(config: config) { _, _ in
        ServiceParts(migrations: DirectoryReplica.migrations + ContactReplica.migrations + CallAnswers.migrations,
                     eventHandlers: DirectoryReplica.handlers(for: .routing) + ContactReplica.handlers(for: .routing) + [CallAnswers.handler])
    }
}
