//! The `patchline` binary: command-line parsing, terminal output and exit
//! codes. The only crate that uses `anyhow`; all work is done by the engine.

mod commands;
mod config;
mod demo;
mod exit;
mod export;
mod feed;
mod gate;
mod output;
mod serve;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::exit::Failure;

/// mimalloc instead of the C library's allocator: a signed delivery
/// allocates and frees many small buffers across threads (rendering,
/// signing, the HTTP client), where glibc's malloc spent a fifth of the
/// delivery path's CPU (BENCHMARKS.md, "Where a signed delivery's time
/// goes").
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Tracks how cloud images derive from one another and which of them carry
/// a failure or a vulnerable package, where it came from and how it spread.
#[derive(Debug, Parser)]
#[command(name = "patchline", version, about, long_about = None)]
struct Cli {
    /// Data directory (holds patchline.db) [env: PATCHLINE_DATA_DIR]
    /// [default: patchline-data; `serve` also reads `server.data_dir` of its
    /// configuration file]
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the HTTP API and the delivery workers. Configured by flags, then
    /// PATCHLINE_* variables, then the configuration file, then defaults
    /// (README.md, "Running as a service"); the admin token comes from
    /// PATCHLINE_ADMIN_TOKEN or a file.
    Serve {
        /// Configuration file (TOML; deploy/patchline.toml shows every key)
        /// [env: PATCHLINE_CONFIG].
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Validate the configuration, print the effective values (secrets
        /// redacted) and exit: 0 when valid, 3 when not.
        #[arg(long)]
        check_config: bool,
        /// Address to listen on (port 0 picks a free port; the bound
        /// address is printed on the first line of standard output)
        /// [env: PATCHLINE_LISTEN] [default: 127.0.0.1:8080].
        #[arg(long)]
        listen: Option<std::net::SocketAddr>,
        /// Do not run the delivery workers and reminders in this process.
        #[arg(long)]
        no_workers: bool,
        /// Keep the state in this PostgreSQL database
        /// (postgres://USER@HOST:PORT/DB) instead of the data directory's
        /// SQLite; one node per database unless the nodes share a bus
        /// (--bus) [env: PATCHLINE_STORE].
        #[arg(long, value_name = "URL")]
        store: Option<String>,
        /// NATS (JetStream) of a deployment of several nodes on the
        /// --store database (nats://HOST:PORT) [env: PATCHLINE_BUS].
        #[arg(long, value_name = "URL")]
        bus: Option<String>,
        /// The deployment's name on the bus (default: patchline)
        /// [env: PATCHLINE_BUS_PREFIX].
        #[arg(long, value_name = "NAME")]
        bus_prefix: Option<String>,
    },
    /// Import artifacts, advisories or an artifact's inventory.
    #[command(subcommand)]
    Import(Import),
    /// Which artifacts an advisory or failure affects, where it was
    /// introduced and along which path it spread.
    Affected {
        /// Advisory or failure id.
        id: String,
        /// Print the JSON document of CONTRACT.md §5 (`--format json`).
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// table (readable, the default), json, sarif (SARIF 2.1.0) or
        /// cyclonedx (a CycloneDX 1.6 vulnerability report).
        #[arg(long, value_enum)]
        format: Option<OutFormat>,
        /// Only this tenant's artifacts (ids it may not see are hidden).
        #[arg(long)]
        tenant: Option<String>,
        /// Rows shown in the readable report (0: all).
        #[arg(long, default_value_t = 50)]
        limit: usize,
        #[command(flatten)]
        gate: GateArgs,
    },
    /// Where to patch: the remedy plan of an advisory or failure — one
    /// step per top-most artifact a tenant owns on each affected chain
    /// (rebase, rebuild or relaunch), top-down, with the successor to move
    /// onto or the upstream artifact it waits for — and the artifacts whose
    /// patched successor would clear the most.
    Remedy {
        /// Advisory or failure id.
        id: String,
        /// Only this tenant's plan (without it: every tenant's).
        #[arg(long)]
        tenant: Option<String>,
        /// How many artifacts of how many tenants a successor of this
        /// artifact would clear, before anything is built.
        #[arg(long, value_name = "ARTIFACT")]
        if_successor_of: Option<String>,
        /// Print the JSON document of CONTRACT.md §5.
        #[arg(long)]
        json: bool,
    },
    /// Who would inherit a failure of an artifact that has not happened
    /// yet: its descendants by kind and their tenants; without an id, the
    /// public images ranked by exposure.
    Exposure {
        /// Artifact id (without it: every public image).
        id: Option<String>,
        /// Public images listed without an id (0: all).
        #[arg(long, default_value_t = 20)]
        limit: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// The lineage of an artifact: its ancestors and its subtree as a tree.
    Lineage {
        id: String,
        /// Most nodes printed.
        #[arg(long, default_value_t = 200)]
        max_nodes: usize,
        #[arg(long)]
        json: bool,
    },
    /// One artifact: what it is, its inventory and what affects it now.
    Show {
        id: String,
        /// `--format json`.
        #[arg(long, conflicts_with = "format")]
        json: bool,
        /// table (readable, the default), json, sarif (SARIF 2.1.0) or
        /// cyclonedx (the artifact's SBOM: its effective inventory, with
        /// what affects it, CycloneDX 1.6).
        #[arg(long, value_enum)]
        format: Option<OutFormat>,
        #[command(flatten)]
        gate: GateArgs,
    },
    /// Every open advisory and failure with how far it spread.
    Report {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        gate: GateArgs,
    },
    /// Publish a failure of one artifact (it propagates to every descendant
    /// that does not declare it fixed).
    Fail {
        /// The failed artifact.
        artifact: String,
        /// The failure id (e.g. FAIL-2024-001).
        #[arg(long)]
        id: String,
        #[arg(long)]
        summary: String,
        /// How severe the failure is (README, "Severity and CI gates").
        #[arg(long, value_enum)]
        severity: Option<SeverityArg>,
    },
    /// Scan disk images (qcow2 backing chains, raw; files or folders): each
    /// becomes an image artifact, id = its path relative to the folder
    /// given, parent = its backing file, inventory = its guest's packages.
    Scan {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
        /// Tenant that owns the scanned images.
        #[arg(long, default_value = "operator")]
        tenant: String,
        #[arg(long, value_enum, default_value_t = VisibilityArg::Private)]
        visibility: VisibilityArg,
    },
    /// Remove artifacts (deleted instances, retired images); leaves only.
    Remove {
        #[arg(required = true)]
        ids: Vec<String>,
    },
    /// Import real package data and advisories into a fresh data directory
    /// and print what is affected and how it spread.
    Demo {
        /// Keep the data directory's previous content instead of starting
        /// afresh.
        #[arg(long)]
        keep: bool,
    },
}

#[derive(Debug, Subcommand)]
enum Import {
    /// Artifacts from a JSONL file, one artifact JSON per line, parents
    /// before children. The file is imported whole or not at all.
    Artifacts {
        file: PathBuf,
        /// Let lines replace existing artifacts (re-parent, re-inventory)
        /// instead of rejecting different content.
        #[arg(long)]
        update: bool,
        /// Reject an inline SBOM at its first component that cannot be
        /// read (invalid purl, no version, a version its ecosystem cannot
        /// order) instead of skipping it with a warning.
        #[arg(long)]
        strict: bool,
    },
    /// OSV advisories (JSON or YAML files, or folders of them).
    Advisories {
        #[arg(required = true)]
        paths: Vec<PathBuf>,
    },
    /// Replace an artifact's own inventory with a dpkg status, apk
    /// installed, CycloneDX, SPDX or purl-list file.
    Inventory {
        artifact: String,
        file: PathBuf,
        /// The file's format (detected when omitted).
        #[arg(long, value_enum)]
        format: Option<FormatArg>,
        /// Distribution for purls without one, as os-release gives it
        /// (debian-12, ubuntu-18.04, alpine-3.18).
        #[arg(long)]
        distro: Option<String>,
        /// Reject the file at its first component that cannot be read
        /// (invalid purl, no version, a version its ecosystem cannot order)
        /// instead of skipping it with a warning.
        #[arg(long)]
        strict: bool,
    },
}

/// `--severity`, `--ignore-unfixed`, `--fail-on` (README, "Severity and
/// CI gates").
#[derive(Debug, Args)]
struct GateArgs {
    /// Only records rated LEVEL or higher (unknown: every record, the
    /// unrated ones too).
    #[arg(long, value_enum, value_name = "LEVEL")]
    severity: Option<gate::Level>,
    /// Leave out affected components that have no fixed version.
    #[arg(long)]
    ignore_unfixed: bool,
    /// Exit with code 8 when a finding shown is rated LEVEL or higher
    /// (unknown: any finding).
    #[arg(long, value_enum, value_name = "LEVEL")]
    fail_on: Option<gate::Level>,
}

impl GateArgs {
    fn gate(&self) -> gate::Gate {
        gate::Gate {
            severity: self.severity,
            ignore_unfixed: self.ignore_unfixed,
            fail_on: self.fail_on,
        }
    }
}

/// `--format` of `affected` and `show`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutFormat {
    Table,
    Json,
    Sarif,
    Cyclonedx,
}

impl OutFormat {
    fn of(json: bool, format: Option<OutFormat>) -> OutFormat {
        if json {
            OutFormat::Json
        } else {
            format.unwrap_or(OutFormat::Table)
        }
    }
}

/// `fail --severity`: a level, never a free word (a typo would leave the
/// failure unrated, past every `--fail-on` but `unknown`).
#[derive(Debug, Clone, Copy, ValueEnum)]
enum SeverityArg {
    None,
    Low,
    Medium,
    High,
    Critical,
}

impl SeverityArg {
    fn name(self) -> &'static str {
        match self {
            SeverityArg::None => "none",
            SeverityArg::Low => "low",
            SeverityArg::Medium => "medium",
            SeverityArg::High => "high",
            SeverityArg::Critical => "critical",
        }
    }
}

/// `--visibility`.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum VisibilityArg {
    Private,
    Public,
}

/// `--format` of `import inventory`.
#[derive(Debug, Clone, Copy, ValueEnum)]
enum FormatArg {
    CyclonedxJson,
    CyclonedxXml,
    SpdxJson,
    DpkgStatus,
    ApkInstalled,
    Purls,
}

impl FormatArg {
    fn name(self) -> &'static str {
        match self {
            FormatArg::CyclonedxJson => "cyclonedx-json",
            FormatArg::CyclonedxXml => "cyclonedx-xml",
            FormatArg::SpdxJson => "spdx-json",
            FormatArg::DpkgStatus => "dpkg-status",
            FormatArg::ApkInstalled => "apk-installed",
            FormatArg::Purls => "purls",
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // The commands other than `serve` take the flag, else
    // PATCHLINE_DATA_DIR, else the default; `serve` resolves it with the
    // rest of its configuration.
    let data_dir = cli
        .data_dir
        .clone()
        .or_else(|| {
            std::env::var_os("PATCHLINE_DATA_DIR")
                .filter(|v| !v.to_string_lossy().trim().is_empty())
                .map(PathBuf::from)
        })
        .unwrap_or_else(|| PathBuf::from(config::DEFAULT_DATA_DIR));
    // Found by a new user: with PATCHLINE_STORE exported for `serve`, an
    // `import` made a local SQLite catalog and said nothing.
    if !matches!(cli.command, Command::Serve { .. })
        && std::env::var("PATCHLINE_STORE").is_ok_and(|v| !v.trim().is_empty())
    {
        eprintln!(
            "note: PATCHLINE_STORE is set, but this command works on the data directory {} (its SQLite catalog), not on PostgreSQL; to change a deployment on PostgreSQL, use the API of one of its nodes",
            data_dir.display()
        );
    }
    let result = match cli.command {
        Command::Serve {
            config,
            check_config,
            listen,
            no_workers,
            store,
            bus,
            bus_prefix,
        } => {
            let flags = config::Flags {
                config,
                data_dir: cli.data_dir,
                listen,
                no_workers,
                store,
                bus,
                bus_prefix,
            };
            if check_config {
                serve::check_config(&flags)
            } else {
                serve::run(&flags)
            }
        }
        Command::Import(Import::Artifacts {
            file,
            update,
            strict,
        }) => commands::import_artifacts(&data_dir, &file, update, strict),
        Command::Import(Import::Advisories { paths }) => {
            commands::import_advisories(&data_dir, &paths)
        }
        Command::Import(Import::Inventory {
            artifact,
            file,
            format,
            distro,
            strict,
        }) => commands::import_inventory(
            &data_dir,
            &artifact,
            &file,
            format.map(FormatArg::name),
            distro,
            strict,
        ),
        Command::Affected {
            id,
            json,
            format,
            tenant,
            limit,
            gate,
        } => commands::affected(
            &data_dir,
            &id,
            OutFormat::of(json, format),
            tenant.as_deref(),
            limit,
            gate.gate(),
        ),
        Command::Remedy {
            id,
            tenant,
            if_successor_of,
            json,
        } => commands::remedy(
            &data_dir,
            &id,
            tenant.as_deref(),
            if_successor_of.as_deref(),
            json,
        ),
        Command::Exposure { id, limit, json } => {
            commands::exposure(&data_dir, id.as_deref(), limit, json)
        }
        Command::Lineage {
            id,
            max_nodes,
            json,
        } => commands::lineage(&data_dir, &id, max_nodes, json),
        Command::Show {
            id,
            json,
            format,
            gate,
        } => commands::show(&data_dir, &id, OutFormat::of(json, format), gate.gate()),
        Command::Report { json, gate } => commands::report(&data_dir, json, gate.gate()),
        Command::Fail {
            artifact,
            id,
            summary,
            severity,
        } => commands::fail(
            &data_dir,
            &artifact,
            &id,
            &summary,
            severity.map(|s| s.name().to_string()),
        ),
        Command::Remove { ids } => commands::remove(&data_dir, &ids),
        Command::Scan {
            paths,
            tenant,
            visibility,
        } => commands::scan(
            &data_dir,
            &paths,
            &tenant,
            match visibility {
                VisibilityArg::Private => patchline_core::Visibility::Private,
                VisibilityArg::Public => patchline_core::Visibility::Public,
            },
        ),
        Command::Demo { keep } => demo::run(&data_dir, keep),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => failure.report(),
    }
}

pub(crate) type CmdResult = Result<(), Failure>;
