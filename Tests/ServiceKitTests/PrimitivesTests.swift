import Foundation
import Models
import Synchronization
import Testing
@testable import ServiceKit

@Suite("Backoff, doorbell, trace context, clocks")
struct PrimitivesTests {
    @Test("a JSON value decodes each kind as itself: a number is not a bool, a bool not a number, a string not either")
    func jsonValueKinds() throws {
        let text = #"{"s":"true","n":1,"f":1.5,"b":true,"z":null,"a":[0,"1",false,{}],"o":{"k":["v"]}}"#
        let value = try JSONCoding.decoder.decode(JSONValue.self, from: Data(text.utf8))
        #expect(value == .object(["s": .string("true"), "n": .number(1), "f": .number(1.5), "b": .bool(true), "z": .null,
                                  "a": .array([.number(0), .string("1"), .bool(false), .object([:])]), "o": .object(["k": .array([.string("v")])])]))
    }

    @Test("backoff doubles per attempt, is capped, and jitters within [½, 1] of its ceiling")
    func backoff() {
        let backoff = Backoff(base: 2, cap: 60)
        #expect(backoff.delay(afterAttempt: 1, unit: 1) == 2)
        #expect(backoff.delay(afterAttempt: 2, unit: 1) == 4)
        #expect(backoff.delay(afterAttempt: 3, unit: 0) == 4)
        #expect(backoff.delay(afterAttempt: 10, unit: 1) == 60)
        #expect(backoff.delay(afterAttempt: 1000, unit: 1) == 60)
        for attempt in 1...12 {
            let low = backoff.delay(afterAttempt: attempt, unit: 0)
            let high = backoff.delay(afterAttempt: attempt, unit: 1)
            #expect(low * 2 == high)
            #expect(high <= 60)
        }
    }

    @Test("X-4: a startup gate lets waiters through when it opens, and lets a cancelled waiter go (a failed start still shuts down)")
    func startupGate() async {
        let gate = StartupGate()
        let cancelled = Task { await gate.wait() }
        cancelled.cancel()
        await cancelled.value
        let waiting = Task { await gate.wait(); return gate.isOpen }
        try? await Task.sleep(for: .milliseconds(20))
        gate.open()
        #expect(await waiting.value)
        await gate.wait()
    }

    @Test("a batch reads what its handlers share once, reads again after a handler drops it, and outside a batch reads every time")
    func batchMemo() async throws {
        let reads = Atomic<Int>(0)
        @Sendable func read() async throws -> Int { reads.add(1, ordering: .relaxed).newValue }
        #expect(try await BatchMemo.value("k", read: read) == 1)
        #expect(try await BatchMemo.value("k", read: read) == 2)
        try await BatchMemo.$current.withValue(BatchMemo()) { () async throws in
            #expect(try await BatchMemo.value("k", read: read) == 3)
            #expect(try await BatchMemo.value("k", read: read) == 3)
            #expect(try await BatchMemo.value("other", read: read) == 4)
            BatchMemo.clear()
            #expect(try await BatchMemo.value("k", read: read) == 5)
        }
        try await BatchMemo.$current.withValue(BatchMemo()) { () async throws in
            #expect(try await BatchMemo.value("k", read: read) == 6, "a new batch keeps nothing of the last")
        }
    }

    @Test("a ring before anyone waits is kept; a waiter is woken by a ring; a wait without ring times out")
    func doorbell() async {
        let bell = Doorbell()
        bell.ring()
        let early = ContinuousClock.now
        await bell.wait(timeout: .seconds(10))
        #expect(ContinuousClock.now - early < .seconds(5))

        let timeoutStart = ContinuousClock.now
        await bell.wait(timeout: .milliseconds(100))
        #expect(ContinuousClock.now - timeoutStart >= .milliseconds(90))

        let started = ContinuousClock.now
        async let waited: Void = bell.wait(timeout: .seconds(10))
        try? await Task.sleep(for: .milliseconds(50))
        bell.ring()
        await waited
        #expect(ContinuousClock.now - started < .seconds(5))
    }

    @Test("ringOne wakes one waiter of two; a ringOne before anyone waits is kept for the next")
    func doorbellRingOne() async {
        final class Woken: Sendable { let count = Mutex(0) }
        let bell = Doorbell()
        let woken = Woken()
        await withTaskGroup(of: Void.self) { group in
            for _ in 0..<2 {
                group.addTask {
                    await bell.wait(timeout: .seconds(2))
                    woken.count.withLock { $0 += 1 }
                }
            }
            try? await Task.sleep(for: .milliseconds(100))
            bell.ringOne()
            try? await Task.sleep(for: .milliseconds(300))
            #expect(woken.count.withLock { $0 } == 1, "one job, one worker")
        }
        bell.ringOne()
        let early = ContinuousClock.now
        await bell.wait(timeout: .seconds(10))
        #expect(ContinuousClock.now - early < .seconds(5))
    }

    @Test("outbox wake-ups ring the lanes of the subscribers they name, every lane when they name none")
    func outboxLanes() async throws {
        let bells = OutboxBells(for: .contacts)
        #expect(Set(bells.lanes.keys) == Set(ServiceName.allCases).subtracting([.contacts]))
        bells.ring(payload: "outbox:routing,notifications")
        for lane in [ServiceName.routing, .notifications] {
            let started = ContinuousClock.now
            await try #require(bells.lanes[lane]).wait(timeout: .seconds(10))
            #expect(ContinuousClock.now - started < .seconds(5), "\(lane) was rung")
        }
        let quiet = ContinuousClock.now
        await try #require(bells.lanes[.automation]).wait(timeout: .milliseconds(100))
        #expect(ContinuousClock.now - quiet >= .milliseconds(90), "automation was not rung")
        bells.ring(payload: "outbox")
        for lane in bells.lanes.keys {
            let started = ContinuousClock.now
            await try #require(bells.lanes[lane]).wait(timeout: .seconds(10))
            #expect(ContinuousClock.now - started < .seconds(5), "\(lane) was rung")
        }
    }

    @Test("outbox batches are cut into requests under the byte limit, in order; an event larger than the limit goes alone")
    func outboxChunks() {
        func row(_ id: Int64, _ bytes: Int) -> OutboxDispatcher.Row {
            OutboxDispatcher.Row(id: id, subscriber: "routing", payload: String(repeating: "x", count: bytes), attempts: 1, eventType: "contacts.imported")
        }
        let rows = [row(1, 400), row(2, 400), row(3, 400), row(4, 2000), row(5, 100)]
        let chunks = OutboxDispatcher.chunks(rows, maxBytes: 1000)
        #expect(chunks.map { $0.map(\.id) } == [[1, 2], [3], [4], [5]])
        #expect(OutboxDispatcher.chunks([], maxBytes: 1000).isEmpty)
    }

    @Test("an id's lower-case text is Foundation's, lower-cased; ids order as their text does")
    func uuidText() {
        let ids = (0..<2_000).map { _ in UUID.random() } + [UUID(uuid: (0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0)),
                                                             UUID(uuid: (255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255, 255))]
        #expect(ids.allSatisfy { $0.lowercasedString == $0.uuidString.lowercased() })
        #expect(ids.sorted().map(\.uuidString) == ids.map(\.uuidString).sorted())
    }

    @Test("the virtual clock only moves forward")
    func virtualClock() {
        let start = Date(timeIntervalSince1970: 1_800_000_000)
        let clock = VirtualClock(start)
        clock.advance(to: start.addingTimeInterval(60))
        clock.advance(to: start)
        #expect(clock.now == start.addingTimeInterval(60))
    }

    @Test("X-4: traceparent: a valid header's trace id is kept, an invalid one is replaced")
    func traceparent() {
        #expect(TraceMiddleware<AppContext>.traceId(of: "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01") == "4bf92f3577b34da6a3ce929d0e0e4736")
        #expect(TraceMiddleware<AppContext>.traceId(of: "00-00000000000000000000000000000000-00f067aa0ba902b7-01") == nil)
        #expect(TraceMiddleware<AppContext>.traceId(of: "garbage") == nil)
    }

    @Test("X-4: hex is two lower-case digits a byte; random trace ids and span ids have the length W3C asks and differ")
    func hexAndRandomIds() {
        #expect([UInt8]([0x00, 0x0f, 0x10, 0xab, 0xff]).hexString == "000f10abff")
        #expect([UInt8]().hexString == "")
        let span = TraceMiddleware<AppContext>.randomHex(8)
        let trace = TraceMiddleware<AppContext>.randomHex(16)
        #expect(span.count == 16 && trace.count == 32)
        #expect(TraceMiddleware<AppContext>.traceId(of: "00-\(trace)-\(span)-01") == trace)
        #expect(TraceMiddleware<AppContext>.randomHex(16) != trace)
        #expect(TraceMiddleware<AppContext>.randomHex(3).count == 6)
    }

    @Test("subscriptions: every event type names at least one subscriber, and no service subscribes to itself")
    func subscriptions() {
        for (type, subscribers) in Subscriptions.table {
            #expect(!subscribers.isEmpty, "\(type)")
        }
        #expect(!Subscriptions.subscribers(of: EventType.userUpserted).contains(.contacts))
        #expect(Subscriptions.events(for: .accountability).contains(EventType.userLoggedIn))
    }

    @Test("X-3: an assignment routing made is not sent back to routing; anyone else's reaches every contact reader")
    func notEchoed() throws {
        func lanes(_ type: String, causedBy: ServiceName?) throws -> [String] {
            var event = try OutgoingEvent(header: EventHeader(type: type, version: 2, occurredAt: Date(timeIntervalSince1970: 0), companyId: UUID(),
                                                              subjectId: UUID()), data: ["x": 1])
            event.causedBy = causedBy
            return try OutboxRows([event]).subscribers.sorted()
        }
        let readers = ["accountability", "automation", "notifications", "routing", "smartplans"]
        #expect(try lanes(EventType.contactAssigned, causedBy: .routing) == ["accountability", "automation", "notifications", "smartplans"])
        #expect(try lanes(EventType.contactAssigned, causedBy: nil) == readers)
        #expect(try lanes(EventType.contactAssigned, causedBy: .automation) == readers)
        // Only the listed events: routing still hears of the contacts it creates and updates.
        #expect(try lanes(EventType.contactUpdated, causedBy: .routing) == readers)
        #expect(try lanes(EventType.contactStatusChanged, causedBy: .routing) == readers)
    }

    @Test("phone numbers normalise to E.164; bad ones are refused")
    func phones() {
        #expect(PhoneNumber("(312) 555-0123")?.e164 == "+13125550123")
        #expect(PhoneNumber("1-312-555-0123")?.e164 == "+13125550123")
        #expect(PhoneNumber("+44 20 7946 0958")?.e164 == "+442079460958")
        #expect(PhoneNumber("+13125550123")?.northAmericanAreaCode == "312")
        for bad in ["", "555-0123", "abc", "+1 (312) 555-0123 ext 4", "(112) 555-0123", "++13125550123", "+0123456789"] {
            #expect(PhoneNumber(bad) == nil, "\(bad)")
        }
    }

    @Test("e-mail addresses are trimmed, lower-cased and checked")
    func emails() {
        #expect(EmailAddress(" Jane.Doe@Example.COM ")?.value == "jane.doe@example.com")
        for bad in ["", "jane", "jane@", "@example.com", "jane@example", "jane doe@example.com", "jane@@example.com", "jane@example.c0m", "a..b@example.com"] {
            #expect(EmailAddress(bad) == nil, "\(bad)")
        }
    }
}

@Suite("RFC 3339 times")
struct RFC3339Tests {
    @Test("well-formed times parse, with fractions and offsets")
    func valid() throws {
        let base = try #require(RFC3339.date(from: "2026-03-08T08:00:00Z"))
        #expect(RFC3339.date(from: "2026-03-08T02:00:00-06:00") == base)
        #expect(RFC3339.date(from: "2026-03-08t08:00:00.5z") == base.addingTimeInterval(0.5))
        #expect(RFC3339.date(from: "2024-02-29T00:00:00Z") != nil)
        #expect(RFC3339.date(from: RFC3339.string(from: base)) == base)
    }

    @Test("out-of-range fields and malformed shapes are refused", arguments: [
        "2024-01-01T12:99:00Z", "2024-13-01T00:00:00Z", "2023-02-29T00:00:00Z", "2024-01-01T24:00:00Z",
        "2024-01-01 12:00:00Z", "2024-01-01T12:00:00", "2024-01-01T12:00:00+2:00", "2024-01-01T12:00:00.Z",
        "2024-01-01", "", "2024-01-01T12:00:00Zjunk", "2024-01-01T12:00:00+24:00",
    ])
    func invalid(text: String) {
        #expect(RFC3339.date(from: text) == nil)
    }
}
