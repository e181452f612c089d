import Hummingbird
import Models
import ServiceKit

/// Wires the automation service: website activity (BA-1) so far, the kit's routes and the
/// directory and contact replicas its features will read, and the merge-field list and template
/// preview (SP-4, BA-8) its templates will use.
func buildAutomation(config: ServiceConfig) async throws -> some ApplicationProtocol {
    try await ServiceKit.buildApplication(config: config) { environment, routes in
        TemplatePreviewController(client: environment.client, logger: environment.logger).register(on: routes.authenticated)
        let activity = ActivityStore(client: environment.client, outbox: environment.outbox, logger: environment.logger)
        ActivityController(store: activity, clock: environment.clock).register(open: routes.open, authenticated: routes.authenticated)
        let shifts = StatusShifts(client: environment.client, jobs: environment.jobs, peers: environment.peers, clock: environment.clock,
                                  logger: environment.logger)
        return ServiceParts(migrations: DirectoryReplica.migrations + ContactReplica.migrations + DirectoryReplica.userPreferences
                         + DirectoryReplica.userLender + DirectoryReplica.entityAddress + AutomationMigrations.own,
                     eventHandlers: DirectoryReplica.handlers(for: .automation) + ContactReplica.handlers(for: .automation) + [shifts.eventHandler],
                     jobHandlers: [shifts.jobHandler])
    }
}
