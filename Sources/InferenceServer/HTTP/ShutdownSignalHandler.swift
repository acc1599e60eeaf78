import Foundation
import Glibc
import Synchronization

/// Turns SIGINT/SIGTERM into a graceful `HTTPServer.shutdown`, then calls `onStopped` (by default `exit(0)`).
///
/// The signal handler itself only writes one byte to a pipe (write(2) is async-signal-safe); a watcher thread
/// reads it and does the work outside signal context. Keep the returned object alive for as long as the
/// handlers should stay installed; `uninstall()` restores the default dispositions.
public final class ShutdownSignalHandler: Sendable {
    private let signals: [Int32]
    private let pipe: WakePipe
    private let watcherDone = DispatchSemaphore(value: 0)
    private let uninstalled = Atomic<Bool>(false)

    private static let installed = Mutex(false)

    /// Installs handlers for `signals`. Only one handler object may be installed at a time. `whenGraceExpires` is
    /// passed to `HTTPServer.shutdown`: it ends the requests still running when the grace period is over.
    public static func install(server: HTTPServer, gracePeriod: Double = 10, signals: [Int32] = [SIGINT, SIGTERM],
                               onStopped: @escaping @Sendable () -> Void = { exit(0) },
                               whenGraceExpires: (@Sendable () -> Void)? = nil)
        throws(HTTPServerError) -> ShutdownSignalHandler {
        let claimed = installed.withLock { taken in
            if taken { return false }
            taken = true
            return true
        }
        guard claimed else { throw .signalHandlerAlreadyInstalled }
        let pipe: WakePipe
        do throws(HTTPServerError) {
            pipe = try WakePipe()
        } catch {
            installed.withLock { $0 = false }
            throw error
        }
        return ShutdownSignalHandler(server: server, gracePeriod: gracePeriod, signals: signals, pipe: pipe,
                                     onStopped: onStopped, whenGraceExpires: whenGraceExpires)
    }

    private init(server: HTTPServer, gracePeriod: Double, signals: [Int32], pipe: WakePipe,
                 onStopped: @escaping @Sendable () -> Void, whenGraceExpires: (@Sendable () -> Void)?) {
        self.signals = signals
        self.pipe = pipe
        let done = watcherDone
        let thread = Thread {
            var byte: UInt8 = 0
            while true {
                let n = Glibc.read(pipe.readFD, &byte, 1)
                if n < 0 && errno == EINTR { continue }
                break
            }
            if byte != 0 {  // a signal, not uninstall()
                server.shutdown(gracePeriod: gracePeriod, whenGraceExpires: whenGraceExpires)
                onStopped()
            }
            done.signal()
        }
        thread.name = "http-signals"
        thread.start()
        signalPipeWriteFD = pipe.writeFD
        for signo in signals { signal(signo, forwardSignalToPipe) }
    }

    /// Restores the default dispositions and stops the watcher thread (unless a signal already started a shutdown,
    /// in which case it waits for that to finish).
    public func uninstall() {
        guard !uninstalled.exchange(true, ordering: .acquiringAndReleasing) else { return }
        for signo in signals { signal(signo, SIG_DFL) }
        var zero: UInt8 = 0
        _ = Glibc.write(pipe.writeFD, &zero, 1)
        watcherDone.wait()
        signalPipeWriteFD = -1
        pipe.close()
        Self.installed.withLock { $0 = false }
    }
}

/// The descriptor the signal handler writes to. Set before the handlers are installed and cleared only after they
/// are removed, so the handler never sees a half-made value; `nonisolated(unsafe)` because a signal handler
/// cannot take a lock.
nonisolated(unsafe) private var signalPipeWriteFD: Int32 = -1

private func forwardSignalToPipe(_ signo: Int32) {
    let savedErrno = errno
    var byte = UInt8(truncatingIfNeeded: signo)
    if byte == 0 { byte = 1 }
    _ = write(signalPipeWriteFD, &byte, 1)
    errno = savedErrno
}
