import Foundation

extension UUID {
    /// A random (version 4) id from the system's random source. `UUID()` makes the same kind of id
    /// but took three times as long, which was a tenth of planning a 10,000-row import.
    public static func random() -> UUID {
        var generator = SystemRandomNumberGenerator()
        return random(using: &generator)
    }
}
