//! A TCP proxy a test can cut: between one client and a server, it passes bytes, holds them
//! (a partition: connections stay open, nothing gets through either way, and what was held is
//! delivered once healed, as TCP would after a network partition), or closes every new
//! connection at once (a server that is down). Its threads stop, and its sockets close, when it
//! drops.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Pass = 0,
    Hold = 1,
    Reject = 2,
}

pub struct TcpProxy {
    pub addr: SocketAddr,
    mode: Arc<AtomicU8>,
    stop: Arc<AtomicBool>,
    threads: Arc<Mutex<Vec<JoinHandle<()>>>>,
    accept: Option<JoinHandle<()>>,
}

const TICK: Duration = Duration::from_millis(20);

impl TcpProxy {
    /// Listens on a free port of `listen_ip`, forwarding to `upstream`, in `mode`.
    pub fn start(listen_ip: std::net::IpAddr, upstream: SocketAddr, mode: Mode) -> TcpProxy {
        let listener = TcpListener::bind((listen_ip, 0)).expect("proxy listener");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("proxy address");
        let mode = Arc::new(AtomicU8::new(mode as u8));
        let stop = Arc::new(AtomicBool::new(false));
        let threads: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let (m, s, t) = (mode.clone(), stop.clone(), threads.clone());
        let accept = std::thread::spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((client, _)) => {
                        if m.load(Ordering::SeqCst) == Mode::Reject as u8 {
                            drop(client);
                            continue;
                        }
                        let (m, s) = (m.clone(), s.clone());
                        let h = std::thread::spawn(move || serve(client, upstream, &m, &s));
                        t.lock().unwrap().push(h);
                    }
                    Err(e) if e.kind() == ErrorKind::WouldBlock => std::thread::sleep(TICK),
                    Err(_) => std::thread::sleep(TICK),
                }
            }
        });
        TcpProxy {
            addr,
            mode,
            stop,
            threads,
            accept: Some(accept),
        }
    }

    pub fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(a) = self.accept.take() {
            let _ = a.join();
        }
        let threads: Vec<_> = self.threads.lock().unwrap().drain(..).collect();
        for h in threads {
            let _ = h.join();
        }
    }
}

fn held(mode: &AtomicU8) -> bool {
    mode.load(Ordering::SeqCst) == Mode::Hold as u8
}

/// One connection: connects upstream once not held, then pumps both ways until either side
/// closes or the proxy stops.
fn serve(client: TcpStream, upstream: SocketAddr, mode: &AtomicU8, stop: &AtomicBool) {
    while held(mode) {
        if stop.load(Ordering::SeqCst) {
            return;
        }
        std::thread::sleep(TICK);
    }
    let Ok(server) = TcpStream::connect_timeout(&upstream, Duration::from_secs(5)) else {
        return;
    };
    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    std::thread::scope(|scope| {
        scope.spawn(|| pump(client, server, mode, stop));
        scope.spawn(|| pump(s2, c2, mode, stop));
    });
}

/// Copies `from` to `to`, reading nothing while held.
fn pump(mut from: TcpStream, mut to: TcpStream, mode: &AtomicU8, stop: &AtomicBool) {
    let _ = from.set_read_timeout(Some(TICK));
    let _ = to.set_write_timeout(Some(Duration::from_secs(5)));
    let mut buf = [0u8; 16 * 1024];
    while !stop.load(Ordering::SeqCst) {
        if held(mode) {
            std::thread::sleep(TICK);
            continue;
        }
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
            Err(_) => break,
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}
