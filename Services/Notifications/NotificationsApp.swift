import AsyncHTTPClient
import Configuration
import Foundation
import Hummingbird
import Logging
import Models
import NIOCore
import PostgresNIO
import ServiceKit

/// Wires the notifications service: messages and their delivery log, providers chosen by
/// configuration, consent, inbound webhooks, and the directory and contact replicas it resolves
/// recipients from.
func buildNotifications(config: ServiceConfig) async throws -> some ApplicationProtocol {
    let settings = try NotificationSettings(config)
    return try await ServiceKit.buildApplication(config: config) { environment, routes in
        let store = MessageStore(client: environment.client, outbox: environment.outbox, logger: environment.logger)
        let providers = settings.providers(client: environment.client, clock: environment.clock, logger: environment.logger)
        let sender = Sender(store: store, providers: providers, policy: CompliancePolicy(stateRules: settings.stateRules), jobs: environment.jobs,
                            clock: environment.clock, logger: environment.logger, publicURL: settings.webhooks.publicURL,
                            unsubscribeLinks: UnsubscribeLink(secret: config.jwtSecret))
        UnsubscribeController(store: store, links: sender.unsubscribeLinks, clock: environment.clock).register(on: routes.open)
        let recipients = Recipients(store: store, peers: environment.peers)
        MessagesController(store: store, sender: sender, recipients: recipients, clock: environment.clock).register(on: routes.authenticated)
        ConsentController(store: store, recipients: recipients, clock: environment.clock).register(on: routes.authenticated)
        WebhooksController(store: store, sender: sender, settings: settings.webhooks, peers: environment.peers, clock: environment.clock).register(on: routes.open)
        return ServiceParts(migrations: NotificationsMigrations.all,
                            eventHandlers: DirectoryReplica.handlers(for: .notifications) + ContactReplica.handlers(for: .notifications) + [sender.archiveHandler],
                            jobHandlers: [sender.jobHandler])
    }
}

/// Providers and compliance settings from the environment (NT-2, NT-5).
struct NotificationsSettingsError: Error {}

struct NotificationSettings: Sendable {
    /// `none`: no provider for the channel (a brokerage without a texting number): its messages
    /// are refused when asked for, not queued to fail.
    enum Kind: String { case local, twilio, http, none }

    var sms: Kind
    var email: Kind
    var push: Kind
    var twilio: (baseURL: String, accountSid: String, authToken: String, from: String)?
    var emailBaseURL: String?
    var emailFrom: String
    var pushBaseURL: String?
    var pushToken: String?
    var stateRules: [String: StateRule]
    var webhooks: WebhookSettings
    var providerTimeout: TimeAmount

    init(_ config: ServiceConfig) throws {
        let reader = config.reader
        func kind(_ key: ConfigKey, _ variable: String, allowed: [Kind]) throws -> Kind {
            let text = reader.string(forKey: key, default: "local")
            guard let value = Kind(rawValue: text), allowed.contains(value) else {
                throw ConfigError(variable: variable, problem: "must be one of \(allowed.map(\.rawValue).joined(separator: ", "))")
            }
            return value
        }
        func url(_ key: ConfigKey, _ variable: String) throws -> String? {
            try config.httpURL(key: key, variable: variable)
        }
        sms = try kind("sms.provider", "SMS_PROVIDER", allowed: [.local, .twilio, .none])
        email = try kind("email.provider", "EMAIL_PROVIDER", allowed: [.local, .http])
        push = try kind("push.provider", "PUSH_PROVIDER", allowed: [.local, .http])
        let publicURL = try config.publicURL(key: "public.url", variable: "PUBLIC_URL")
        // Webhooks are only believed with a real token: an empty one would let anyone sign.
        let authToken = reader.string(forKey: "twilio.auth.token", isSecret: true).flatMap { $0.count >= 16 ? $0 : nil }
        if sms == .twilio {
            guard let base = try url("twilio.base.url", "TWILIO_BASE_URL") else { throw ConfigError(variable: "TWILIO_BASE_URL", problem: "is required for SMS_PROVIDER=twilio") }
            guard let sid = reader.string(forKey: "twilio.account.sid"), !sid.isEmpty else { throw ConfigError(variable: "TWILIO_ACCOUNT_SID", problem: "is required for SMS_PROVIDER=twilio") }
            guard let authToken, authToken.count >= 16 else { throw ConfigError(variable: "TWILIO_AUTH_TOKEN", problem: "is required (16+ characters) for SMS_PROVIDER=twilio") }
            guard let from = reader.string(forKey: "twilio.from").flatMap(PhoneNumber.init) else { throw ConfigError(variable: "TWILIO_FROM", problem: "must be the sending phone number") }
            twilio = (base, sid, authToken, from.e164)
        }
        emailBaseURL = try url("email.base.url", "EMAIL_BASE_URL")
        if email == .http && emailBaseURL == nil { throw ConfigError(variable: "EMAIL_BASE_URL", problem: "is required for EMAIL_PROVIDER=http") }
        guard let from = EmailAddress(reader.string(forKey: "email.from", default: "no-reply@brokerage.example")) else {
            throw ConfigError(variable: "EMAIL_FROM", problem: "is not an e-mail address")
        }
        emailFrom = from.value
        pushBaseURL = try url("push.base.url", "PUSH_BASE_URL")
        if push == .http && pushBaseURL == nil { throw ConfigError(variable: "PUSH_BASE_URL", problem: "is required for PUSH_PROVIDER=http") }
        pushToken = reader.string(forKey: "push.token", isSecret: true)
        var rules = StateRule.defaults
        if let text = reader.string(forKey: "state.rules") {
            do {
                rules.merge(try StateRule.parse(text)) { _, new in new }
            } catch {
                throw ConfigError(variable: "STATE_RULES", problem: "has a bad rule \"\(error.item)\"; write FL=08:00-20:00/3,OK=08:00-20:00")
            }
        }
        stateRules = rules
        let name = reader.string(forKey: "sender.name", default: "Your real-estate team")
        webhooks = WebhookSettings(
            publicURL: publicURL, twilioAuthToken: authToken, emailSecret: reader.string(forKey: "email.webhook.secret", isSecret: true),
            optOutReply: "\(name): you are unsubscribed and will get no more messages. Reply START to resubscribe.",
            optInReply: "\(name): you are subscribed again. Reply STOP to unsubscribe.",
            helpReply: "\(name): reply STOP to unsubscribe, START to resubscribe. Msg & data rates may apply.")
        providerTimeout = .seconds(Int64(reader.int(forKey: "provider.timeout.seconds", default: 10)))
    }

    func providers(client: PostgresClient, clock: any ServiceClock, logger: Logger) -> Providers {
        let local = LocalProvider(client: client, logger: logger, clock: clock)
        let http = ProviderHTTP(http: .shared, timeout: providerTimeout)
        var phone: any MessageProvider = local
        if let twilio {
            phone = TwilioProvider(baseURL: twilio.baseURL, accountSid: twilio.accountSid, authToken: twilio.authToken,
                                   publicURL: webhooks.publicURL, http: http, logger: logger)
        }
        let mail: any MessageProvider = email == .http ? HTTPEmailProvider(baseURL: emailBaseURL ?? "", http: http, logger: logger) : local
        let pushProvider: any MessageProvider = push == .http ? HTTPPushProvider(baseURL: pushBaseURL ?? "", token: pushToken, http: http) : local
        return Providers(sms: phone, voice: phone, email: mail, push: pushProvider, fromNumber: twilio?.from ?? "+15555550100", fromEmail: emailFrom,
                         phoneConfigured: sms != .none)
    }
}
