import Hummingbird
import Models
import ServiceKit

/// Wires the accountability service: rules per office or team, new-lead calls (AC-1 … AC-3), the
/// daily rotation check (AC-4)
/// with its violations and reinstatements (AC-5), and the directory, contact and task replicas
/// it decides from.
func buildAccountability(config: ServiceConfig) async throws -> some ApplicationProtocol {
    try await ServiceKit.buildApplication(config: config) { environment, routes in
        let store = AccountabilityStore(client: environment.client, logger: environment.logger)
        let checks = RotationChecks(store: store, jobs: environment.jobs, peers: environment.peers, clock: environment.clock, logger: environment.logger)
        AccountabilityController(store: store, checks: checks, clock: environment.clock).register(on: routes.authenticated)
        let calls = NewLeadCalls(store: store, jobs: environment.jobs, peers: environment.peers, clock: environment.clock, logger: environment.logger)
        VoiceController(calls: calls).register(on: routes.authenticated)
        let followUps = FollowUps(store: store, jobs: environment.jobs, peers: environment.peers, clock: environment.clock, logger: environment.logger)
        var parts = ServiceParts(migrations: DirectoryReplica.migrations + ContactReplica.migrations + DirectoryReplica.userPreferences
                                     + DirectoryReplica.userLender + ContactReplica.taskMigrations
                                     + DirectoryReplica.entityAddress + AccountabilityMigrations.own,
                                 eventHandlers: DirectoryReplica.handlers(for: .accountability) + ContactReplica.handlers(for: .accountability)
                                     + calls.eventHandlers + [followUps.eventHandler],
                                 jobHandlers: [checks.enforceHandler, followUps.jobHandler] + calls.jobHandlers)
        parts.periodic = [checks.schedule]
        return parts
    }
}
