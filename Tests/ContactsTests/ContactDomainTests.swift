import Foundation
import Models
import ServiceKit
import Testing
@testable import Contacts

@Suite("CSV import parsing (ST-4)")
struct CSVImportTests {
    @Test("ST-4: good rows become drafts, bad rows are reported by row and column, headers are matched loosely")
    func rowsAndErrors() throws {
        let csv = """
        First Name,last_name,E-mail,Phone,Status,Tags,Price Min,Price Max,Notes
        Ann,One,ann@example.com,(312) 555-0101,New Lead,#buyer;Luxury,"$400,000",600000,hello
        Bob,Two,bob@bad,3125550102,client,,,,
        Cid,Three,,3125550103,wizard,,,,
        Dee,Four,,,active_lead,,700000,600000,
        ,,,,sphere,,,,
        Eve,Five,"eve@example.com",,prospect,,,,"multi
        line note"
        """
        let parsed = try CSVImport.parse(csv)
        #expect(parsed.rows.map(\.row) == [1, 6])
        #expect(parsed.ignoredColumns == ["Notes"])
        let ann = try #require(parsed.rows.first?.draft)
        #expect(ann.status == .newLead)
        #expect(ann.phones.map(\.e164) == ["+13125550101"])
        #expect(ann.tags == ["buyer", "luxury"])
        #expect(ann.searchInterest?.priceMin == 400_000)
        #expect(parsed.errors.map(\.row) == [2, 3, 4, 5])
        #expect(parsed.errors.map(\.field) == ["Email", "Status", "Price Max", "First Name"])
    }

    @Test("ST-4: a file without a Status column, an empty file and a broken quote are refused whole")
    func refusedFiles() {
        #expect(throws: APIError.self) { try CSVImport.parse("Name,Email\nAnn,ann@example.com\n") }
        #expect(throws: APIError.self) { try CSVImport.parse("   \n") }
        #expect(throws: APIError.self) { try CSVImport.parse("Name,Status\n\"Ann,new_lead\n") }
    }

    @Test("ST-4: a file large enough to be checked on several cores keeps its rows, errors and numbers in file order")
    func largeFile() throws {
        var csv = "Name,Email,Status\n"
        for index in 1...7_500 {
            csv += index % 1_000 == 0 ? "Bad \(index),bad\(index)@nowhere,sphere\n" : "Row \(index),row\(index)@example.com,client\n"
            if index % 2_500 == 0 { csv += "\n" }
        }
        let parsed = try CSVImport.parse(csv)
        let blankRows = [2_501, 5_002]
        let numbers = Array((1...7_502).filter { !blankRows.contains($0) })
        let bad = numbers.enumerated().filter { ($0.offset + 1) % 1_000 == 0 }.map(\.element)
        #expect(parsed.errors.map(\.row) == bad)
        #expect(parsed.rows.map(\.row) == numbers.filter { !bad.contains($0) })
        #expect(parsed.rows.first?.draft.emails.map(\.value) == ["row1@example.com"])
        #expect(parsed.rows.last?.draft.emails.map(\.value) == ["row7500@example.com"])
    }

    @Test("ST-4: a row with a name but neither e-mail nor phone is refused and reported, so a re-import cannot create it twice")
    func rowWithoutContactPoint() throws {
        let parsed = try CSVImport.parse("Name,Email,Phone,Status\nAnn Lee,,,sphere\nBob Roe,,312-555-0101,client\n")
        #expect(parsed.rows.map(\.row) == [2])
        #expect(parsed.errors.map(\.row) == [1])
        #expect(parsed.errors.first?.field == "Email")
    }

    @Test("rows with more fields than the header are reported, CRLF files and a BOM are read")
    func shapes() throws {
        let parsed = try CSVImport.parse("\u{FEFF}Name,Status,Email\r\nAnn Lee,sphere,ann@example.com\r\nBob,client,bob@example.com,extra\r\n")
        #expect(parsed.rows.count == 1)
        #expect(parsed.rows[0].draft.firstName == "Ann")
        #expect(parsed.rows[0].draft.lastName == "Lee")
        #expect(parsed.errors.first?.row == 2)
    }
}

@Suite("Contact rules and history (ST-1, ST-3, ST-5, ST-11)")
struct ContactHistoryTests {
    func contact(status: ContactStatus = .newLead, tags: [String] = []) -> Contact {
        Contact(id: UUID(), companyId: UUID(), ownerEntityId: UUID(), status: status, firstName: "Ann", lastName: "Lee",
                emails: ["ann@example.com"], phones: [], leadType: .buyer, source: "zillow", sourceId: nil, tags: tags,
                assignedAgentId: nil, lenderId: nil, pondId: nil, address: nil, searchInterest: nil, listing: nil,
                agentSiteAgentId: nil, origin: .website, behavioralAlerts: true, version: 1, createdAt: Date(), updatedAt: Date())
    }

    let admin = Actor(kind: .user, id: "u1", name: "Dana Admin")

    @Test("ST-3: source leads start as new leads; manual and imported contacts need a chosen status")
    func initialStatus() throws {
        for origin in [CreationOrigin.website, .dropbox, .zapier] {
            #expect(try ContactRules.initialStatus(nil, origin: origin) == .newLead)
        }
        #expect(throws: APIError.self) { try ContactRules.initialStatus(nil, origin: .manual) }
        #expect(throws: APIError.self) { try ContactRules.initialStatus(nil, origin: .import) }
        #expect(try ContactRules.initialStatus(.sphere, origin: .manual) == .sphere)
    }

    @Test("ST-1: a contact's status is one of the eight")
    func statuses() {
        #expect(ContactStatus.allCases.map(\.rawValue) == ["sphere", "prospect", "new_lead", "active_lead", "client", "contract", "closed", "archive"])
    }

    @Test("ST-5, ST-11: each kind of change writes its own timeline entry and event, naming who and why")
    func changes() {
        let before = contact()
        var after = before
        after.status = .activeLead
        after.tags = ["vip"]
        after.assignedAgentId = UUID()
        after.firstName = "Anne"
        let records = ContactHistory.changes(from: before, to: after, actor: admin, reason: "manual")
        #expect(records.map(\.eventType) == [EventType.contactStatusChanged, EventType.contactTagsChanged, EventType.contactAssigned, EventType.contactUpdated])
        #expect(records[0].summary == "Status changed from new lead to active lead: manual (by Dana Admin)")
        #expect(records[0].change.previousStatus == .newLead)
        #expect(records[1].change.tagsAdded == ["vip"])
        #expect(records[3].summary.contains("first name"))
        #expect(ContactHistory.changes(from: before, to: before, actor: admin).isEmpty)
        #expect(ContactHistory.changes(from: nil, to: before, actor: Actor(kind: .source, id: "s", name: "Website")).first?.summary
                == "Contact came in from lead source Website as new lead")
    }

    @Test("tags: the leading # goes, case folds, duplicates merge, odd characters are refused")
    func tags() throws {
        #expect(try ContactRules.tags(["#Luxury", "luxury", "  first  time buyer "]) == ["luxury", "first time buyer"])
        #expect(throws: APIError.self) { try ContactRules.tags(["<script>"]) }
        #expect(throws: APIError.self) { try ContactRules.tags(["#"]) }
    }

    @Test("a contact needs a name, e-mail, phone or address; prices must be ordered")
    func validation() throws {
        #expect(throws: APIError.self) { try ContactRules.validate(ContactDraft()) }
        #expect(throws: Never.self) { try ContactRules.validate(ContactDraft(address: Address(street: "1 Main St"))) }
        let badPrices = ContactDraft(firstName: "A", searchInterest: SearchInterest(priceMin: 5, priceMax: 4))
        let error = try #require(throws: APIError.self) { try ContactRules.validate(badPrices) }
        #expect(error.field == "searchInterest.priceMax")
    }

    @Test("merging keeps what the contact had and adds what the row brings")
    func merge() throws {
        let base = contact(tags: ["a"])
        let draft = try ContactRules.validate(ContactDraft(status: .client, emails: [EmailAddress("new@example.com")!], tags: ["b"]))
        let merged = ContactRules.merge(draft, into: base)
        #expect(merged.status == .client)
        #expect(merged.emails == ["ann@example.com", "new@example.com"])
        #expect(merged.tags == ["a", "b"])
        #expect(merged.firstName == "Ann")
    }
}

@Suite("Transaction webhook signatures (ST-8)")
struct TransactionSignatureTests {
    @Test("ST-8: HMAC-SHA256 over timestamp.body verifies; any change to either does not")
    func signatures() {
        let body = Array(#"{"deliveryId":"d1","status":"closed","email":"a@b.example"}"#.utf8)
        let signature = WebhookSignature.sign(secret: "whsec_x", timestamp: "1700000000", body: body)
        #expect(WebhookSignature.verify(signature: signature, secret: "whsec_x", timestamp: "1700000000", body: body))
        #expect(!WebhookSignature.verify(signature: signature, secret: "whsec_y", timestamp: "1700000000", body: body))
        #expect(!WebhookSignature.verify(signature: signature, secret: "whsec_x", timestamp: "1700000001", body: body))
        #expect(!WebhookSignature.verify(signature: signature, secret: "whsec_x", timestamp: "1700000000", body: body + [32]))
        #expect(!WebhookSignature.verify(signature: "00", secret: "whsec_x", timestamp: "1700000000", body: body))
        #expect(TransactionsController.status(for: "Under_Contract") == .contract)
        #expect(TransactionsController.status(for: "sold") == .closed)
        #expect(TransactionsController.status(for: "cancelled") == nil)
    }
}

@Suite("Import changes (ST-4, ST-11)")
struct ImportChangeTests {
    @Test("ST-4, ST-11: an import's change names the status before and after and the tags added and removed, whatever their case; a created contact has no status before")
    func changes() {
        let now = Date(timeIntervalSince1970: 1_800_000_000)
        let before = Contact(id: UUID(), companyId: UUID(), ownerEntityId: UUID(), status: .prospect, firstName: "Ann", lastName: nil, emails: ["a@example.com"],
                             phones: [], leadType: nil, source: nil, sourceId: nil, tags: ["Buyer", "old"], assignedAgentId: nil, lenderId: nil, pondId: nil,
                             address: nil, searchInterest: nil, listing: nil, agentSiteAgentId: nil, origin: .import, behavioralAlerts: true, version: 1,
                             createdAt: now, updatedAt: now)
        var after = before
        after.status = .activeLead
        after.tags = ["buyer", "Open House"]
        let change = ImportedChange(before: before, after: after)
        #expect(change.statusBefore == .prospect && change.status == .activeLead && !change.created)
        #expect(change.tagsAdded == ["Open House"] && change.tagsRemoved == ["old"])
        let created = ImportedChange(before: nil, after: after)
        #expect(created.created && created.statusBefore == nil && created.tagsAdded == ["buyer", "Open House"])
    }
}
