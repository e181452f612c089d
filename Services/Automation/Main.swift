import Models
import ServiceKit

@main
struct Main {
    static func main() async {
        await ServiceKit.main(.automation, build: buildAutomation)
    }
}
