import Hummingbird
import Models
import ServiceKit

/// Wires the automation service: website activity (BA-1), the six behaviors with their guards,
/// messages and agent alerts (BA-2 … BA-9, BA-11), the automatic status shift (BA-10), the
/// directory and contact replicas they read, and the merge-field list and template preview.
func buildAutomation(config: ServiceConfig) async throws -> some ApplicationProtocol {
    try await ServiceKit.buildApplication(config: config) { environment, routes in
        TemplatePreviewController(client: environment.client, logger: environment.logger).register(on: routes.authenticated)
        let behaviors = BehaviorEngine(client: environment.client, jobs: environment.jobs, peers: environment.peers, clock: environment.clock,
                                       logger: environment.logger)
        let activity = ActivityStore(client: environment.client, outbox: environment.outbox, jobs: environment.jobs, behaviors: behaviors,
                                     clock: environment.clock, logger: environment.logger)
        ActivityController(store: activity, clock: environment.clock, peers: environment.peers).register(open: routes.open, authenticated: routes.authenticated)
        BehaviorController(client: environment.client, clock: environment.clock, logger: environment.logger).register(on: routes.authenticated)
        TrackerController().register(on: routes.open)
        let shifts = StatusShifts(client: environment.client, jobs: environment.jobs, peers: environment.peers, clock: environment.clock,
                                  logger: environment.logger)
        var parts = ServiceParts(migrations: DirectoryReplica.migrations + ContactReplica.migrations + DirectoryReplica.userPreferences
                                 + DirectoryReplica.userLender + DirectoryReplica.entityAddress + AutomationMigrations.own,
                                 eventHandlers: DirectoryReplica.handlers(for: .automation) + ContactReplica.handlers(for: .automation) + [shifts.eventHandler, behaviors.eventHandler],
                                 jobHandlers: [shifts.jobHandler] + behaviors.jobHandlers)
        parts.periodic = [activity.retention]
        return parts
    }
}
