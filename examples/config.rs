//! Loads a configuration file (TOML, YAML or JSON) with `${VAR}` substitution and
//! `OCTOPUS_*` overrides, then registers the instance it describes.
//!
//!     cargo run --example config --features config
//!     ZONE=b OCTOPUS_SERVICE__PORT=6000 cargo run --example config --features config -- examples/octopus.toml

use octopus::OctopusConfig;

#[tokio::main]
async fn main() {
    let path = std::env::args()
        .nth(1)
        .unwrap_or_else(|| concat!(env!("CARGO_MANIFEST_DIR"), "/examples/octopus.toml").into());
    if let Err(e) = run(&path).await {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

async fn run(path: &str) -> octopus::Result<()> {
    let config = OctopusConfig::load(path)?;
    println!("loaded {path}");
    // The URL may hold a password: printed as redact_url shows it.
    println!("  registry: {}", octopus::redact_url(&config.registry));
    let options = config.register_options()?;
    println!("  lease TTL: {:?}", options.lease_ttl());
    let Some(instance) = config.instance()? else {
        println!("  no [service] section: nothing to register");
        return Ok(());
    };
    println!(
        "  instance: {}/{} at {} version {:?} metadata {:?}",
        instance.service,
        instance.id,
        instance.endpoint(),
        instance.version,
        instance.metadata
    );
    let client = octopus::connect(&config.registry).await?;
    let registration = client.registry().register(instance.clone(), options).await?;
    println!("  {}", registration.current());
    let found = client.discovery().instances(&instance.service).await?;
    println!("  discovery sees {} instance(s) of {}", found.len(), instance.service);
    registration.deregister().await?;
    // Before main returns: nothing of this client left in the registry.
    client.shutdown().await
}
