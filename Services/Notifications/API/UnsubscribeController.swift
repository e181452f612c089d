import Foundation
import Hummingbird
import Models
import NIOCore
import ServiceKit

/// The one-click unsubscribe page of automated e-mail (CAN-SPAM), open: the signed link is the
/// permission. Opening the link shows a button (mail scanners that fetch links must not
/// unsubscribe anyone); the button, or a mail client's List-Unsubscribe-Post, unsubscribes at once.
struct UnsubscribeController {
    let store: MessageStore
    let links: UnsubscribeLink
    let clock: any ServiceClock

    func register(on group: RouterGroup<AppContext>) {
        group.get("/unsubscribe/{token}") { _, context -> Response in
            guard let token = context.parameters.get("token"), let (_, address) = links.verify(token) else { return Self.invalid }
            return Self.page(.ok, title: "Unsubscribe", text: "Stop automated e-mail to \(address) from this brokerage?", button: true)
        }
        group.post("/unsubscribe/{token}") { _, context -> Response in
            guard let token = context.parameters.get("token"), let (companyId, address) = links.verify(token) else { return Self.invalid }
            _ = try await store.recordUnsubscribe(address: address, companyId: companyId, how: "one-click unsubscribe link", at: clock.now)
            return Self.page(.ok, title: "Unsubscribed",
                             text: "\(address) gets no more automated e-mail from this brokerage. Your agent may still write to you in person.",
                             button: false)
        }
    }

    static var invalid: Response {
        page(.notFound, title: "Link not valid", text: "This unsubscribe link is not valid. Reply to the e-mail and ask to be removed.", button: false)
    }

    static func page(_ status: HTTPResponse.Status, title: String, text: String, button: Bool) -> Response {
        let form = button ? "<form method=\"post\"><button type=\"submit\">Unsubscribe</button></form>" : ""
        let html = """
            <!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
            <title>\(HTMLText.escape(title))</title><style>body{font-family:system-ui,sans-serif;max-width:32rem;margin:3rem auto;padding:0 1rem}
            button{font-size:1.1rem;padding:.6rem 1.4rem}</style></head>
            <body><h1>\(HTMLText.escape(title))</h1><p>\(HTMLText.escape(text))</p>\(form)</body></html>
            """
        return Response(status: status, headers: [.contentType: "text/html; charset=utf-8", .cacheControl: "no-store"],
                        body: ResponseBody(byteBuffer: ByteBuffer(string: html)))
    }
}
