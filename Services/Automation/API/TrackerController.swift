import Foundation
import Hummingbird
import ServiceKit

/// BA-1 on a real website: the tracking script a brokerage's pages embed, and a demo property
/// page that uses it (the browser test's page, and a walk-through for a brokerage's web team).
struct TrackerController {
    func register(on open: RouterGroup<AppContext>) {
        open.get("/tracker.js") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "application/javascript; charset=utf-8", .cacheControl: "public, max-age=300"],
                     body: .init(byteBuffer: ByteBuffer(string: Self.script)))
        }
        open.get("/demo") { _, _ -> Response in
            Response(status: .ok, headers: [.contentType: "text/html; charset=utf-8"], body: .init(byteBuffer: ByteBuffer(string: Self.demoPage)))
        }
    }

    /// `<script src="…/tracker.js" data-site-key="site_…"></script>`: counts a visit per browser
    /// session, exposes `crmTracker.propertyView(listing)`, `.favorite(listing)`,
    /// `.showingRequest(listing, message)`, `.question(message)` and `.identify(contactId)`, and
    /// sends what it gathered every 2 seconds (and when the page is left) in one batch, stamped
    /// with the browser's clock (`sentAt`) so the service corrects the events' times for a clock
    /// that is off. The visitor id lives in the browser's storage until a lead form makes the
    /// visitor a contact.
    static let script = #"""
    (function () {
      var tag = document.currentScript;
      var key = tag.getAttribute("data-site-key");
      var base = tag.getAttribute("data-endpoint") || new URL(tag.src).origin;
      function uuid() {
        if (window.crypto && crypto.randomUUID) return crypto.randomUUID();
        return "xxxxxxxx-xxxx-4xxx-yxxx-xxxxxxxxxxxx".replace(/[xy]/g, function (c) {
          var r = Math.random() * 16 | 0; return (c === "x" ? r : (r & 3 | 8)).toString(16);
        });
      }
      var store = window.localStorage;
      var visitor = store.getItem("crm.visitor") || uuid();
      store.setItem("crm.visitor", visitor);
      var queue = [], timer = null;
      function send() {
        timer = null;
        while (queue.length) {
          var batch = queue.splice(0, 1000);
          fetch(base + "/v1/activity", {method: "POST", keepalive: true, body: JSON.stringify({events: batch, sentAt: new Date().toISOString()}),
            headers: {"Content-Type": "application/json", "X-Site-Key": key}});
        }
      }
      function track(kind, extra) {
        var event = {id: uuid(), kind: kind, at: new Date().toISOString()};
        var contact = store.getItem("crm.contact");
        if (contact) event.contactId = contact; else event.visitorId = visitor;
        for (var name in extra || {}) event[name] = extra[name];
        queue.push(event);
        if (!timer) timer = setTimeout(send, 2000);
      }
      window.addEventListener("pagehide", send);
      if (!window.sessionStorage.getItem("crm.visited")) {
        window.sessionStorage.setItem("crm.visited", "1");
        track("site_visit");
      }
      window.crmTracker = {
        visitorId: visitor,
        propertyView: function (listing) { track("property_view", {listing: listing}); },
        favorite: function (listing) { track("favorite", {listing: listing}); },
        showingRequest: function (listing, message) { track("showing_request", {listing: listing, message: message}); },
        question: function (message) { track("question", {message: message}); },
        flush: send,
        identify: function (contactId) {
          send();
          store.setItem("crm.contact", contactId);
          return fetch(base + "/v1/activity/identify", {method: "POST", body: JSON.stringify({visitorId: visitor, contactId: contactId}),
            headers: {"Content-Type": "application/json", "X-Site-Key": key}});
        }
      };
    })();
    """#

    /// Six listings and a lead form. The page reads its keys from the address
    /// (`/demo?siteKey=…&leadKey=…&contacts=http://…:8081`): the site key for the tracker, a lead
    /// source's key for the form, which posts to contacts' `/v1/leads` and then joins the visitor.
    static let demoPage = #"""
    <!doctype html>
    <html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
    <title>Demo Realty — homes for sale</title>
    <style>
      body { font-family: system-ui, sans-serif; margin: 0; color: #1d2733; background: #f4f6f8; }
      header { background: #0b5cab; color: #fff; padding: 14px 20px; font-size: 20px; font-weight: 600; }
      main { padding: 16px 20px; max-width: 900px; margin: auto; }
      .grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(180px, 1fr)); gap: 12px; }
      .card { background: #fff; border-radius: 8px; padding: 12px; box-shadow: 0 1px 3px rgba(0,0,0,.12); cursor: pointer; }
      .card .price { font-weight: 700; font-size: 18px; } .card.seen { outline: 2px solid #0b5cab; }
      #detail, form { background: #fff; border-radius: 8px; padding: 14px; margin-top: 16px; box-shadow: 0 1px 3px rgba(0,0,0,.12); }
      input { display: block; width: 95%; margin: 6px 0; padding: 8px; } button { padding: 8px 14px; }
      #status { margin-top: 10px; color: #0b7a3b; font-weight: 600; }
    </style></head>
    <body><header>Demo Realty</header><main>
      <p>Pick a home to see it. Your browsing is remembered so our agents can help.</p>
      <div class="grid" id="listings"></div>
      <div id="detail">Choose a home above.</div>
      <form id="lead"><strong>Talk to an agent</strong>
        <input id="first" placeholder="First name" required><input id="last" placeholder="Last name" required>
        <input id="email" type="email" placeholder="E-mail" required><input id="phone" placeholder="Mobile phone">
        <button id="submit" type="submit">Send</button><div id="status"></div></form>
    </main>
    <script>
      var params = new URLSearchParams(location.search);
      var tag = document.createElement("script");
      tag.src = "/tracker.js"; tag.setAttribute("data-site-key", params.get("siteKey") || "");
      tag.onload = start; document.head.appendChild(tag);
      var homes = [
        {listingId: "DEMO-101", price: 389000, area: "Logan Square", propertyType: "condo", beds: 2},
        {listingId: "DEMO-102", price: 525000, area: "Oak Park", propertyType: "house", beds: 3},
        {listingId: "DEMO-103", price: 612000, area: "Evanston", propertyType: "house", beds: 4},
        {listingId: "DEMO-104", price: 299000, area: "Pilsen", propertyType: "condo", beds: 1},
        {listingId: "DEMO-105", price: 749000, area: "Lincoln Park", propertyType: "townhouse", beds: 3},
        {listingId: "DEMO-106", price: 455000, area: "Hyde Park", propertyType: "condo", beds: 2}];
      function money(n) { return "$" + n.toLocaleString("en-US"); }
      function start() {
        var grid = document.getElementById("listings");
        homes.forEach(function (home) {
          var card = document.createElement("div");
          card.className = "card"; card.id = home.listingId;
          card.innerHTML = '<div class="price">' + money(home.price) + '</div><div>' + home.beds + ' bd ' + home.propertyType + '</div><div>' + home.area + '</div>';
          card.onclick = function () {
            card.classList.add("seen");
            document.getElementById("detail").innerHTML = "<strong>" + home.area + " " + home.propertyType + "</strong> — " + money(home.price) + " (" + home.listingId + ")";
            crmTracker.propertyView({listingId: home.listingId, price: home.price, area: home.area, propertyType: home.propertyType});
          };
          grid.appendChild(card);
        });
        document.getElementById("lead").onsubmit = function (event) {
          event.preventDefault();
          var lead = {firstName: first.value, lastName: last.value, email: email.value, leadType: "buyer"};
          if (phone.value) lead.phones = [phone.value];
          fetch((params.get("contacts") || "") + "/v1/leads", {method: "POST", body: JSON.stringify(lead),
              headers: {"Content-Type": "application/json", "X-Api-Key": params.get("leadKey") || ""}})
            .then(function (answer) { return answer.json(); })
            .then(function (answer) {
              return crmTracker.identify(answer.contact.id).then(function (joined) {
                if (!joined.ok) throw new Error("the visitor was not joined (" + joined.status + ")");
                return answer;
              });
            })
            .then(function (answer) { document.getElementById("status").textContent = "Thanks " + answer.contact.firstName + "! An agent will be in touch."; })
            .catch(function (error) { document.getElementById("status").textContent = "Something went wrong: " + error; });
        };
      }
    </script></body></html>
    """#
}
