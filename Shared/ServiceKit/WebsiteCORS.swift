import Hummingbird
import Models

/// The routes a brokerage's own website calls from its visitors' browsers, on another origin than
/// the service: contacts' lead form and automation's activity tracker. They are authenticated by
/// a key in a header (never a cookie), so any origin may call them: a preflight is answered, and
/// every answer (errors too) says so. No other route answers another origin.
package struct WebsiteCORS<Context: RequestContext>: RouterMiddleware {
    package static func paths(for service: ServiceName) -> Set<String> {
        switch service {
        case .contacts: ["/v1/leads"]
        case .automation: ["/v1/activity", "/v1/activity/identify"]
        default: []
        }
    }

    let paths: Set<String>

    package init(service: ServiceName) {
        paths = Self.paths(for: service)
    }

    package func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        guard !paths.isEmpty, paths.contains(request.uri.path) else { return try await next(request, context) }
        if request.method == .options {
            return Response(status: .noContent, headers: [
                .accessControlAllowOrigin: "*",
                .accessControlAllowMethods: "POST, OPTIONS",
                .accessControlAllowHeaders: "Content-Type, X-Api-Key, X-Site-Key, Idempotency-Key",
                .accessControlMaxAge: "600",
            ])
        }
        var response = try await next(request, context)
        response.headers[.accessControlAllowOrigin] = "*"
        return response
    }
}
