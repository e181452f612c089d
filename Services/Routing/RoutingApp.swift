import Foundation
import Hummingbird
import Models
import ServiceKit

/// Wires the routing service: rules per scope, the lead router that decides on every new lead,
/// offers with their page and phone menu, explanations, and the directory and contact replicas
/// its decisions read.
func buildRouting(config: ServiceConfig) async throws -> some ApplicationProtocol {
    let publicURL = try config.publicURL(key: "offer.base.url", variable: "OFFER_BASE_URL")
    let page = try OfferPage()
    return try await ServiceKit.buildApplication(config: config) { environment, routes in
        let store = RoutingStore(client: environment.client, logger: environment.logger)
        let router = LeadRouter(store: store, jobs: environment.jobs, clock: environment.clock, random: { Double.random(in: 0..<1) },
                                logger: environment.logger)
        let links = OfferLink(secret: config.jwtSecret)
        let jobs = RoutingJobs(router: router, peers: environment.peers, links: links, publicURL: publicURL)
        RulesController(store: store, peers: environment.peers, clock: environment.clock).register(on: routes.authenticated)
        ExplanationController(store: store).register(on: routes.authenticated)
        OffersController(router: router, links: links, page: page).register(open: routes.open, authenticated: routes.authenticated)
        return ServiceParts(migrations: RoutingMigrations.all,
                            eventHandlers: DirectoryReplica.handlers(for: .routing) + ContactReplica.handlers(for: .routing) + [CallAnswers.handler]
                                + router.eventHandlers,
                            jobHandlers: jobs.handlers)
    }
}
