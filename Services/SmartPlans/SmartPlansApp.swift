import Hummingbird
import Models
import ServiceKit

/// Wires the smartplans service: plans and their versions, enrollment, the steps run as jobs on
/// the service clock and the preview (SP-1 … SP-7, SP-10, SP-11), the directory and contact
/// replicas they read, and the merge-field list and template preview (SP-4).
func buildSmartPlans(config: ServiceConfig) async throws -> some ApplicationProtocol {
    try await ServiceKit.buildApplication(config: config) { environment, routes in
        TemplatePreviewController(client: environment.client, logger: environment.logger).register(on: routes.authenticated)
        let store = PlanStore(client: environment.client, logger: environment.logger)
        let engine = PlanEngine(store: store, jobs: environment.jobs, peers: environment.peers, clock: environment.clock, logger: environment.logger)
        let plans = PlansController(store: store, engine: engine, clock: environment.clock)
        plans.register(on: routes.authenticated)
        LibraryController(plans: plans).register(on: routes.authenticated)
        DesignsController(plans: plans).register(on: routes.authenticated)
        return ServiceParts(migrations: DirectoryReplica.migrations + ContactReplica.migrations + DirectoryReplica.userPreferences
                         + DirectoryReplica.userLender + DirectoryReplica.entityAddress + SmartPlansMigrations.own,
                     eventHandlers: DirectoryReplica.handlers(for: .smartplans) + ContactReplica.handlers(for: .smartplans) + engine.eventHandlers,
                     jobHandlers: [engine.jobHandler])
    }
}
