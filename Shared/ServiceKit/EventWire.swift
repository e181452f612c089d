import Foundation
import Models

/// The envelope's fields without its payload.
package struct EventHeader: Codable, Sendable, Hashable {
    package var id: UUID
    package var type: String
    package var version: Int
    package var occurredAt: Date
    package var companyId: UUID?
    package var subjectId: UUID?

    enum CodingKeys: String, CodingKey {
        case id, type, version, occurredAt, companyId, subjectId, data
    }

    package init(id: UUID = UUID.random(), type: String, version: Int, occurredAt: Date, companyId: UUID?, subjectId: UUID?) {
        self.id = id
        self.type = type
        self.version = version
        self.occurredAt = occurredAt
        self.companyId = companyId
        self.subjectId = subjectId
    }

    /// Decodes the header of a whole envelope, which must carry `data`.
    package init(from decoder: any Decoder) throws {
        let container = try decoder.container(keyedBy: CodingKeys.self)
        id = try container.decode(UUID.self, forKey: .id)
        type = try container.decode(String.self, forKey: .type)
        version = try container.decode(Int.self, forKey: .version)
        occurredAt = try container.decode(Date.self, forKey: .occurredAt)
        companyId = try container.decodeIfPresent(UUID.self, forKey: .companyId)
        subjectId = try container.decodeIfPresent(UUID.self, forKey: .subjectId)
        guard container.contains(.data) else {
            throw DecodingError.keyNotFound(CodingKeys.data, .init(codingPath: container.codingPath, debugDescription: "data is required"))
        }
    }

    package func encode(to encoder: any Encoder) throws {
        var container = encoder.container(keyedBy: CodingKeys.self)
        try container.encode(id, forKey: .id)
        try container.encode(type, forKey: .type)
        try container.encode(version, forKey: .version)
        try container.encode(occurredAt, forKey: .occurredAt)
        try container.encodeIfPresent(companyId, forKey: .companyId)
        try container.encodeIfPresent(subjectId, forKey: .subjectId)
    }
}

/// An event on its way out: the payload is encoded once, straight from its typed value, and
/// spliced into the envelope (no detour through a JSON tree).
package struct OutgoingEvent: Sendable, Hashable {
    package var header: EventHeader
    package var dataJSON: String
    /// The service whose request made the change, when one did; not on the wire. Some events are
    /// not sent back to it (`Subscriptions.notEchoed`).
    package var causedBy: ServiceName?

    package init(header: EventHeader, data: some Encodable) throws {
        self.init(header: header, dataJSON: try JSONCoding.string(data))
    }

    /// An event whose payload is already JSON (a document the caller encoded for its own row).
    package init(header: EventHeader, dataJSON: String) {
        self.header = header
        self.dataJSON = dataJSON
    }

    package init(_ envelope: EventEnvelope) throws {
        try self.init(header: EventHeader(id: envelope.id, type: envelope.type, version: envelope.version, occurredAt: envelope.occurredAt,
                                          companyId: envelope.companyId, subjectId: envelope.subjectId), data: envelope.data)
    }

    package var id: UUID { header.id }
    package var type: String { header.type }

    /// The whole envelope as JSON.
    package func json() throws -> String {
        var head = String(decoding: try JSONCoding.encoder.encode(header), as: UTF8.self)
        head.removeLast()
        return head + ",\"data\":" + dataJSON + "}"
    }
}

/// An event as a receiver got it: its header, and the body its payload is decoded from directly.
package struct ReceivedEvent: Sendable {
    package let header: EventHeader
    package let body: Data

    package init(body: Data) throws {
        header = try JSONCoding.decoder.decode(EventHeader.self, from: body)
        self.body = body
    }

    package init(_ event: OutgoingEvent) throws {
        try self.init(body: Data(try event.json().utf8))
    }

    package var id: UUID { header.id }
    package var type: String { header.type }
    package var version: Int { header.version }

    private struct Payload<T: Decodable>: Decodable {
        var data: T
    }

    /// The payload as `T`; a payload of the wrong shape is the sender's error (422), named by field.
    package func data<T: Decodable>(_ type: T.Type) throws -> T {
        do {
            return try JSONCoding.decoder.decode(Payload<T>.self, from: body).data
        } catch let error as DecodingError {
            throw APIError.fromDecoding(error)
        }
    }
}
