//! A real PostgreSQL (Debian's `postgresql` package) on a free loopback port,
//! with a data directory of its own, stopped when dropped.
//!
//! `initdb` and `postgres` refuse to run as root: when the tests run as root
//! (as CI does), the server runs as the `postgres` user through `runuser`, its
//! data directory handed to that user.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

/// A running PostgreSQL server; killed and its directory removed when dropped.
pub struct Postgres {
    child: Child,
    port: u16,
    bin: PathBuf,
    dir: tempfile::TempDir,
    user: Option<String>,
    next: AtomicUsize,
}

/// The directory of the newest installed server's binaries.
pub fn bin_dir() -> Option<PathBuf> {
    let mut majors: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let major = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("postgres").is_file().then_some((major, bin))
        })
        .collect();
    majors.sort();
    majors.pop().map(|(_, bin)| bin)
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

fn command(user: Option<&str>, program: &Path) -> Command {
    match user {
        Some(user) => {
            let mut c = Command::new("runuser");
            c.args(["-u", user, "--"]).arg(program);
            c
        }
        None => Command::new(program),
    }
}

fn run(mut cmd: Command, what: &str) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Postgres {
    /// Starts a server and waits until it accepts connections. Panics with the
    /// reason if PostgreSQL is not installed or does not start.
    pub fn start() -> Postgres {
        let bin = bin_dir()
            .expect("PostgreSQL is not installed (apt-get install postgresql): no /usr/lib/postgresql/*/bin/postgres");
        let dir = tempfile::tempdir().expect("a temporary directory");
        let user = is_root().then(|| "postgres".to_string());
        if let Some(user) = &user {
            run(
                {
                    let mut c = Command::new("chown");
                    c.args(["-R", user]).arg(dir.path());
                    c
                },
                "chown of the data directory",
            );
        }
        let data = dir.path().join("data");
        let mut init = command(user.as_deref(), &bin.join("initdb"));
        init.args(["-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync", "-D"])
            .arg(&data);
        run(init, "initdb");
        let port = crate::ports::free_port();
        let mut server = command(user.as_deref(), &bin.join("postgres"));
        server
            .arg("-D")
            .arg(&data)
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-k"])
            .arg(dir.path())
            .args([
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "synchronous_commit=off",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let child = server.spawn().expect("postgres starts");
        let pg = Postgres {
            child,
            port,
            bin,
            dir,
            user,
            next: AtomicUsize::new(0),
        };
        for _ in 0..300 {
            let ready = command(pg.user.as_deref(), &pg.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "postgres"])
                .output()
                .is_ok_and(|o| o.status.success());
            if ready {
                return pg;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!("PostgreSQL did not accept connections on 127.0.0.1:{port} within 30 s");
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The URL of database `db` on this server.
    pub fn url(&self, db: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{db}", self.port)
    }

    /// Creates a new empty database (one per test) and returns its URL.
    pub fn database(&self, name: &str) -> String {
        let db = format!("{name}_{}", self.next.fetch_add(1, Ordering::SeqCst));
        self.psql("postgres", &format!("CREATE DATABASE \"{db}\""));
        self.url(&db)
    }

    /// Runs `sql` with psql in database `db`; panics on an error.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let mut c = command(self.user.as_deref(), &self.bin.join("psql"));
        c.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .args(["-U", "postgres", "-d", db, "-c", sql]);
        String::from_utf8_lossy(&run(c, "psql").stdout).into_owned()
    }

    /// The server's directory (data and socket).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // The child may be `runuser`, which a kill would not pass on to the
        // server: pg_ctl stops the server itself, then the child is reaped.
        let _ = command(self.user.as_deref(), &self.bin.join("pg_ctl"))
            .args(["-D"])
            .arg(self.dir.path().join("data"))
            .args(["-m", "immediate", "-w", "stop"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
