import Models
import ServiceKit

@main
struct Main {
    static func main() async {
        await ServiceKit.main(.smartplans, build: buildSmartPlans)
    }
}
