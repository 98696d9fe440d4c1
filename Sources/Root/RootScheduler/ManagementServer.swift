import DeviceModel
import Foundation
import Hummingbird
import Logging
import ManagementAPI

/// The root's management API: REST-style JSON over a Unix socket (documented in
/// Docs/management-api.md).
///
///     GET    /v1/root                         RootInfo
///     GET    /v1/partitions                   [PartitionInfo]
///     POST   /v1/partitions                   PartitionConfiguration → 201 PartitionInfo
///     GET    /v1/partitions/{name}            PartitionInfo
///     POST   /v1/partitions/{name}/actions    PartitionAction → PartitionInfo
///     GET    /v1/partitions/{name}/console    ConsoleOutput (?lines=N, default 200)
///     PATCH  /v1/partitions/{name}/cpu        ProcessorSettings → PartitionInfo
///     GET    /v1/partitions/{name}/stats      PartitionStatistics
///     DELETE /v1/partitions/{name}            204
///     POST   /v1/partitions/{name}/devices    DeviceConfiguration → 201 PartitionInfo (hot-add)
///     PUT    /v1/partitions/{name}/devices/{device}   settings object → PartitionInfo
///     DELETE /v1/partitions/{name}/devices/{device}   PartitionInfo (hot-remove)
///     GET    /v1/switches                     [SwitchInfo]
///     POST   /v1/switches                     SwitchConfiguration → 201 SwitchInfo
///     DELETE /v1/switches/{name}              204 (409 while NICs use it)
///
/// `{device}` is a device's instance GUID, or its kind when the partition has one of that kind.
///
/// Every error is a `RootError`, answered as `{"error": "<one sentence>"}` with the status its
/// `kind` maps it to: 400, 404, 409 or 500.
enum ManagementServer {
    static func makeApplication(scheduler: RootScheduler, socketPath: String, logger: Logger)
        -> some ApplicationProtocol
    {
        let router = Router()
        router.get("/v1/root") { _, _ in
            json(RootInfo(version: hypervisorVersion, processID: getpid(),
                          parentConnected: scheduler.parentLink?.isConnected ?? false,
                          partitions: scheduler.list().count, processorControls: scheduler.processors.summary))
        }
        router.get("/v1/partitions") { _, _ in
            json(scheduler.list())
        }
        router.post("/v1/partitions") { request, context in
            let configuration: PartitionConfiguration
            do {
                configuration = try await request.decode(as: PartitionConfiguration.self, context: context)
            } catch {
                return failure(.invalidRequest("The partition configuration is not valid JSON for a partition: \(error)."))
            }
            return respond(status: .created) { () throws(RootError) in try scheduler.create(configuration) }
        }
        router.get("/v1/partitions/:name") { _, context in
            let name = context.parameters.get("name") ?? ""
            return respond { () throws(RootError) in try scheduler.info(name) }
        }
        router.post("/v1/partitions/:name/actions") { request, context in
            let name = context.parameters.get("name") ?? ""
            let action: PartitionAction
            do {
                action = try await request.decode(as: PartitionAction.self, context: context)
            } catch {
                return failure(.invalidRequest("The body must be {\"action\": \"start|pause|resume|stop|shutdown\"}."))
            }
            return respond { () throws(RootError) in try scheduler.perform(action.action, on: name) }
        }
        router.get("/v1/partitions/:name/console") { request, context in
            let name = context.parameters.get("name") ?? ""
            let lines = request.uri.queryParameters.get("lines").flatMap { Int($0) } ?? 200
            return respond { () throws(RootError) in ConsoleOutput(lines: try scheduler.console(name, lines: lines)) }
        }
        router.post("/v1/partitions/:name/devices") { request, context in
            let name = context.parameters.get("name") ?? ""
            let device: DeviceConfiguration
            do {
                device = try await request.decode(as: DeviceConfiguration.self, context: context)
            } catch {
                return failure(.invalidRequest("The body must be a device: a kind, or {\"kind\": …, settings}: \(error)."))
            }
            return respond(status: .created) { () throws(RootError) in try scheduler.addDevice(device, to: name) }
        }
        router.put("/v1/partitions/:name/devices/:device") { request, context in
            let name = context.parameters.get("name") ?? ""
            let device = context.parameters.get("device") ?? ""
            let settings: [String: JSONValue]
            do {
                settings = try await request.decode(as: [String: JSONValue].self, context: context)
            } catch {
                return failure(.invalidRequest("The body must be the device's settings, a JSON object: \(error)."))
            }
            return respond { () throws(RootError) in try scheduler.changeDevice(device, of: name, settings: settings) }
        }
        router.delete("/v1/partitions/:name/devices/:device") { _, context in
            let name = context.parameters.get("name") ?? ""
            let device = context.parameters.get("device") ?? ""
            return respond { () throws(RootError) in try scheduler.removeDevice(device, from: name) }
        }
        router.get("/v1/switches") { _, _ in
            json(scheduler.listSwitches())
        }
        router.post("/v1/switches") { request, context in
            let configuration: SwitchConfiguration
            do {
                configuration = try await request.decode(as: SwitchConfiguration.self, context: context)
            } catch {
                return failure(.invalidRequest("The body must be a switch: {\"name\": …, \"kind\": \"private|internal|external\"}: \(error)."))
            }
            return respond(status: .created) { () throws(RootError) in try scheduler.createSwitch(configuration) }
        }
        router.delete("/v1/switches/:name") { _, context in
            let name = context.parameters.get("name") ?? ""
            do throws(RootError) {
                try scheduler.deleteSwitch(name)
                return Response(status: .noContent)
            } catch {
                return failure(error)
            }
        }
        router.patch("/v1/partitions/:name/cpu") { request, context in
            let name = context.parameters.get("name") ?? ""
            let change: ProcessorSettings
            do {
                change = try await request.decode(as: ProcessorSettings.self, context: context)
            } catch {
                return failure(.invalidRequest(
                    "The body must be {\"reserve\": 0-100, \"limit\": 1-100, \"weight\": 1-10000, \"affinity\": [processors]}, each optional."))
            }
            return respond { () throws(RootError) in try scheduler.setProcessorControls(change, of: name) }
        }
        router.get("/v1/partitions/:name/stats") { _, context in
            let name = context.parameters.get("name") ?? ""
            return respond { () throws(RootError) in try scheduler.statistics(name) }
        }
        router.delete("/v1/partitions/:name") { _, context in
            let name = context.parameters.get("name") ?? ""
            do throws(RootError) {
                try scheduler.delete(name)
                return Response(status: .noContent)
            } catch {
                return failure(error)
            }
        }
        return Application(router: router, configuration: .init(address: .unixDomainSocket(path: socketPath)),
                           logger: logger)
    }

    private static func respond<T: Encodable>(status: HTTPResponse.Status = .ok, _ body: () throws(RootError) -> T) -> Response {
        do {
            return json(try body(), status: status)
        } catch {
            return failure(error)
        }
    }

    private static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys]
        let data = (try? encoder.encode(value)) ?? Data("{}".utf8)
        return Response(status: status, headers: [.contentType: "application/json"],
                        body: .init(byteBuffer: ByteBuffer(bytes: data)))
    }

    /// The answer to a failed request: the error's sentence with the status its kind maps to.
    static func failure(_ error: RootError) -> Response {
        let answer = error.answer
        return Response(status: HTTPResponse.Status(code: answer.status), headers: [.contentType: "application/json"],
                        body: .init(byteBuffer: ByteBuffer(bytes: answer.body)))
    }
}
