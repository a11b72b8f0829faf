//! `octopus`: scaffold a self-registering gRPC service, inspect a registry, run an
//! in-memory etcd for development.
// The commands' doc comments are clap's --help text (docs/CLI.md shows it as
// printed): file patterns such as src/model/<table>.rs stay unquoted there.
#![allow(rustdoc::invalid_html_tags)]

mod console;
mod dev;
mod inspect;
mod model;
mod new;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Service registration and discovery for Rust.
///
/// Exit codes: 0 success; 1 the command failed (registry unreachable, instance
/// not found, directory exists…); 2 bad arguments.
// No `Debug` here or on the arguments below: they hold the registry URL as
// given, password and all.
#[derive(Parser)]
#[command(name = "octopus", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate a ready gRPC service that registers itself with Octopus.
    New(NewArgs),
    /// Generate models, CRUD gRPC services, migrations and tests from a SQL schema.
    ///
    /// Run in a project made by `octopus new` (or name it with --path); one made
    /// without --ddl gets the model layer wired in first. No database is needed. `<table>_gen.rs`, proto/model.proto and
    /// tests/model_gen.rs are rewritten on every run (a hand-edited one is
    /// refused unless --force); src/model/<table>.rs and src/handlers/<table>.rs
    /// are written once and never touched again; an additive change of the DDL
    /// adds a numbered migration, a destructive one is refused unless --force.
    Model(ModelArgs),
    /// List the services of a registry, or the instances of one service.
    Ls {
        /// The service (all services if omitted).
        service: Option<String>,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Show one instance: SERVICE/ID.
    Get {
        /// The instance, as SERVICE/ID.
        instance: String,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Follow a service's instances as they change (until Ctrl-C).
    Watch {
        /// The service.
        service: String,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Delete an instance's key now, whoever holds it: SERVICE/ID.
    ///
    /// For the key of a process that is gone, before its TTL runs out. A process
    /// that still runs registers again: stop it first to remove it for good.
    Deregister {
        /// The instance, as SERVICE/ID.
        instance: String,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Mark an instance draining: SERVICE/ID.
    ///
    /// It stays registered and listed (STATE draining), but balancers send it no
    /// new calls while another instance can take them, and its gRPC health says
    /// NOT_SERVING. The process keeps the mark until `octopus undrain`, through
    /// re-registrations. For maintenance, or to take one instance out of traffic.
    Drain {
        /// The instance, as SERVICE/ID.
        instance: String,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Clear an instance's draining mark: SERVICE/ID takes new calls again.
    Undrain {
        /// The instance, as SERVICE/ID.
        instance: String,
        #[command(flatten)]
        registry: RegistryArgs,
    },
    /// Serve the live registry console: a web page and a JSON API under /api.
    ///
    /// Every service, instance, lease and change, live by server-sent events;
    /// drain, undrain and deregister with --writes. Binds 127.0.0.1:8470 unless
    /// told; see docs/CLI.md, "Console".
    Console {
        /// The registry URL, e.g. etcd://127.0.0.1:2379?namespace=/prod.
        #[arg(
            long,
            env = "OCTOPUS_REGISTRY",
            hide_env_values = true,
            default_value = "etcd://127.0.0.1:2379"
        )]
        registry: String,
        #[command(flatten)]
        console: console::ConsoleArgs,
    },
    /// Run an in-memory etcd (v3 API) for development: no etcd installed needed.
    ///
    /// A single member serving KV (range, put, delete, txn, compact), Lease (grant,
    /// revoke, keep-alive, time-to-live, list), Watch (revisions, prefixes, prev_kv,
    /// progress), status and member list: what Octopus, etcdctl and most clients
    /// use. No auth, no TLS, no cluster. See docs/RELIABILITY.md, "The simulated etcd".
    Dev {
        /// Where to listen.
        #[arg(long, default_value = "127.0.0.1:2379")]
        listen: SocketAddr,
        /// Load the keys and leases from FILE at start (if it exists) and save them
        /// there on shutdown (SIGINT or SIGTERM). History is not kept.
        #[arg(long, value_name = "FILE")]
        data: Option<PathBuf>,
        /// Also serve the live registry console for it (see `octopus console`).
        #[arg(long)]
        console: bool,
        /// Where the console listens, with --console.
        #[arg(long, value_name = "ADDR", default_value = console::DEFAULT_LISTEN)]
        console_listen: SocketAddr,
        /// Let the console drain, undrain and deregister, with --console.
        #[arg(long)]
        console_writes: bool,
    },
}

#[derive(Debug, clap::Args)]
struct NewArgs {
    /// The service name: 1 to 64 lowercase letters, digits, `-` and `_`, starting
    /// with a letter, not ending in `-` or `_`, and not a Rust keyword.
    name: String,
    /// Where to create the project (default: ./NAME).
    #[arg(long)]
    path: Option<PathBuf>,
    /// The registry the generated config points at.
    #[arg(long, value_enum, default_value_t = Backend::Etcd)]
    backend: Backend,
    /// Depend on the Octopus checkout at this path. Default: the checkout this CLI
    /// was built from, if it was; else the published octopus-discovery of the
    /// CLI's own version.
    #[arg(long, value_name = "DIR")]
    octopus_path: Option<PathBuf>,
    /// Write into an existing directory, replacing the files it generates.
    #[arg(long)]
    force: bool,
    /// Also generate models, CRUD services and migrations from this SQL schema
    /// (see `octopus model`).
    #[arg(long, value_name = "FILE")]
    ddl: Option<PathBuf>,
    /// The DDL's dialect (default: MySQL if it has backticks, AUTO_INCREMENT or
    /// ENGINE=, SQLite if it has AUTOINCREMENT, else PostgreSQL).
    #[arg(long, value_enum, requires = "ddl")]
    dialect: Option<model::Dialect>,
}

#[derive(Debug, clap::Args)]
struct ModelArgs {
    /// The SQL schema: CREATE TABLE and CREATE INDEX statements (others are skipped).
    #[arg(long, value_name = "FILE")]
    ddl: PathBuf,
    /// The DDL's dialect (default: MySQL if it has backticks, AUTO_INCREMENT or
    /// ENGINE=, SQLite if it has AUTOINCREMENT, else PostgreSQL).
    #[arg(long, value_enum)]
    dialect: Option<model::Dialect>,
    /// The project (default: the current directory).
    #[arg(long, value_name = "DIR")]
    path: Option<PathBuf>,
    /// Overwrite generated files edited by hand; allow destructive migrations.
    #[arg(long)]
    force: bool,
    /// Write nothing; exit 1 if anything would change (for CI).
    #[arg(long, conflicts_with = "force")]
    check: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Backend {
    /// etcd://127.0.0.1:2379 (`octopus dev` serves it without an etcd).
    Etcd,
    /// mem:// (the process's own registry: for trying things out).
    Mem,
}

#[derive(clap::Args)]
struct RegistryArgs {
    /// The registry URL, e.g. etcd://127.0.0.1:2379?namespace=/prod.
    #[arg(
        long,
        env = "OCTOPUS_REGISTRY",
        hide_env_values = true,
        default_value = "etcd://127.0.0.1:2379"
    )]
    registry: String,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

impl RegistryArgs {
    /// The registry URL as it may be printed: secrets as `***`.
    fn shown(&self) -> String {
        octopus::redact_url(&self.registry)
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Octopus's own logs (a watch reconnecting, `octopus dev`'s server) on stderr,
    // filtered by RUST_LOG; warnings and errors by default.
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let result = match cli.command {
        Command::New(args) => new::run(&args),
        Command::Model(args) => model::run(
            &args.ddl,
            args.dialect,
            args.path,
            &model::Options {
                force: args.force,
                check: args.check,
            },
        ),
        other => {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime");
            runtime.block_on(async move {
                match other {
                    Command::Ls { service, registry } => inspect::ls(&registry, service.as_deref()).await,
                    Command::Get { instance, registry } => inspect::get(&registry, &instance).await,
                    Command::Watch { service, registry } => inspect::watch(&registry, &service).await,
                    Command::Deregister { instance, registry } => inspect::deregister(&registry, &instance).await,
                    Command::Drain { instance, registry } => inspect::drain(&registry, &instance, true).await,
                    Command::Undrain { instance, registry } => inspect::drain(&registry, &instance, false).await,
                    Command::Console { registry, console } => console::run(&console, &registry).await,
                    Command::Dev {
                        listen,
                        data,
                        console,
                        console_listen,
                        console_writes,
                    } => {
                        let console = console.then_some(console::ConsoleArgs {
                            listen: console_listen,
                            writes: console_writes,
                            token_file: None,
                            allow_host: Vec::new(),
                        });
                        dev::run(listen, data, console).await
                    }
                    Command::New(_) | Command::Model(_) => unreachable!("handled above"),
                }
            })
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("octopus: {e}");
            ExitCode::from(1)
        }
    }
}

/// A command's error: a message for the user.
type Result<T = ()> = std::result::Result<T, String>;
