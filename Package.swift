// swift-tools-version:6.2
import PackageDescription

let swiftSettings: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny"),
]

let kitDependencies: [Target.Dependency] = [
    "Models",
    "ServiceKit",
    .product(name: "Hummingbird", package: "hummingbird"),
    .product(name: "PostgresNIO", package: "postgres-nio"),
    .product(name: "Logging", package: "swift-log"),
]

/// Every service is declared the same way, so the six stay of one shape.
func serviceTarget(_ name: String, extra: [Target.Dependency] = []) -> Target {
    .executableTarget(
        name: name,
        dependencies: kitDependencies + extra,
        path: "Services/\(name)",
        exclude: ["README.md"],
        swiftSettings: swiftSettings
    )
}

func serviceTests(_ name: String) -> Target {
    .testTarget(
        name: "\(name)Tests",
        dependencies: [
            .target(name: name), "ServiceKit", "Models", "TestSupport",
            .product(name: "HummingbirdTesting", package: "hummingbird"),
            .product(name: "PostgresNIO", package: "postgres-nio"),
        ],
        path: "Tests/\(name)Tests",
        swiftSettings: swiftSettings
    )
}

let services = ["Contacts", "Routing", "Automation", "Accountability", "SmartPlans", "Notifications"]
/// A service gets its test target with its first domain rules.
let servicesWithTests = ["Contacts", "Routing", "Notifications", "Accountability", "Automation", "SmartPlans"]

let package = Package(
    name: "brokerage-crm",
    platforms: [.macOS(.v15)],
    products: services.map { .executable(name: $0.lowercased(), targets: [$0]) } + [.executable(name: "bench", targets: ["Bench"])],
    dependencies: [
        .package(url: "https://github.com/hummingbird-project/hummingbird.git", from: "2.28.1"),
        .package(url: "https://github.com/hummingbird-project/hummingbird-auth.git", from: "2.5.0"),
        .package(url: "https://github.com/vapor/postgres-nio.git", from: "1.33.2"),
        .package(url: "https://github.com/apple/swift-nio-ssl.git", from: "2.37.6"),
        .package(url: "https://github.com/swift-server/async-http-client.git", from: "1.37.0"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle.git", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-log.git", from: "1.16.2"),
        .package(url: "https://github.com/apple/swift-metrics.git", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus.git", from: "2.4.1"),
        .package(url: "https://github.com/vapor/jwt-kit.git", from: "5.8.0"),
        .package(url: "https://github.com/apple/swift-configuration.git", from: "1.4.0"),
        .package(url: "https://github.com/apple/swift-crypto.git", from: "4.5.2"),
        .package(url: "https://github.com/yaslab/CSV.swift.git", from: "2.5.2"),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift.git", from: "0.2.0"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache.git", from: "2.1.1"),
    ],
    targets: [
        .target(name: "Models", path: "Shared/Models", swiftSettings: swiftSettings),
        .target(
            name: "ServiceKit",
            dependencies: [
                "Models",
                .product(name: "Hummingbird", package: "hummingbird"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "NIOSSL", package: "swift-nio-ssl"),
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "Metrics", package: "swift-metrics"),
                .product(name: "Prometheus", package: "swift-prometheus"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Configuration", package: "swift-configuration"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "Shared/ServiceKit",
            swiftSettings: swiftSettings
        ),
        serviceTarget("Contacts", extra: [
            .product(name: "HummingbirdBcrypt", package: "hummingbird-auth"),
            .product(name: "CSV", package: "CSV.swift"),
        ]),
        serviceTarget("Routing", extra: [
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "Mustache", package: "swift-mustache"),
        ]),
        serviceTarget("Automation", extra: [.product(name: "Crypto", package: "swift-crypto")]),
        serviceTarget("Accountability"),
        serviceTarget("SmartPlans"),
        serviceTarget("Notifications", extra: [
            .product(name: "Crypto", package: "swift-crypto"),
            .product(name: "AsyncHTTPClient", package: "async-http-client"),
            .product(name: "Configuration", package: "swift-configuration"),
        ]),
        .executableTarget(
            name: "Bench",
            dependencies: [
                "Models",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Histogram", package: "hdrhistogram-swift"),
            ],
            path: "Tools/bench",
            swiftSettings: swiftSettings
        ),
        // A real database and a hand-moved clock for store tests (TEST_DATABASE_URL).
        .target(
            name: "TestSupport",
            dependencies: [
                "ServiceKit",
                .product(name: "PostgresNIO", package: "postgres-nio"),
                .product(name: "Logging", package: "swift-log"),
            ],
            path: "Tests/TestSupport",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "ServiceKitTests",
            dependencies: [
                "ServiceKit", "Models", "TestSupport",
                .product(name: "HummingbirdTesting", package: "hummingbird"),
                .product(name: "PostgresNIO", package: "postgres-nio"),
            ],
            path: "Tests/ServiceKitTests",
            swiftSettings: swiftSettings
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "Models",
                .product(name: "AsyncHTTPClient", package: "async-http-client"),
                .product(name: "JWTKit", package: "jwt-kit"),
                .product(name: "Crypto", package: "swift-crypto"),
            ],
            path: "Tests/IntegrationTests",
            swiftSettings: swiftSettings
        ),
    ] + servicesWithTests.map(serviceTests)
)
