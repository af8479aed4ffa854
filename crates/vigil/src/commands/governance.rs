//! `vigil audit`, `vigil compliance`, `vigil guard`, `vigil erase`.

use std::process::ExitCode;

use anyhow::Context;
use serde_json::json;
use vigil_governance::audit::{self, VerifyReport};
use vigil_governance::compliance::{self, Framework, ReportInput};
use vigil_governance::policy::Policy;
use vigil_model::{format_rfc3339_nanos, now_unix_nanos, parse_rfc3339_nanos};
use vigil_store::{ApprovalStatus, GovernanceStore, ProjectStore};

use crate::cli::{AuditCommand, ComplianceCommand, EraseArgs, GuardCommand};
use crate::config::{Config, Settings};

fn print_report(r: &VerifyReport, name: &str) {
    match &r.first_break {
        None => println!(
            "ok      {name}: {} entries ({} erased), {} signed checkpoints verified, head #{} {}",
            r.entries, r.erased_entries, r.checkpoints_verified, r.head_seq, r.head_hash
        ),
        Some(b) => println!("BROKEN  {name}: entry {}: {}", b.seq, b.problem),
    }
}

/// A public key given inline (hex) or as a file holding it.
fn read_public_key(arg: &str) -> anyhow::Result<String> {
    let path = std::path::Path::new(arg);
    if path.exists() {
        return Ok(std::fs::read_to_string(path)
            .with_context(|| format!("cannot read `{arg}`"))?
            .trim()
            .to_string());
    }
    Ok(arg.trim().to_string())
}

pub async fn audit(config: Config, cmd: AuditCommand) -> anyhow::Result<ExitCode> {
    // Offline verification needs no configuration, store or data directory.
    if let AuditCommand::Verify {
        bundle: Some(file),
        public_key: Some(key),
        json,
        ..
    } = &cmd
    {
        let bytes =
            std::fs::read(file).with_context(|| format!("cannot read `{}`", file.display()))?;
        let key = read_public_key(key)?;
        return Ok(match audit::verify_bundle(&bytes, &key) {
            Ok(r) => {
                if *json {
                    println!("{}", serde_json::to_string_pretty(&r)?);
                } else {
                    print_report(&r, &format!("bundle {}", file.display()));
                }
                if r.ok() {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                if *json {
                    println!("{}", json!({"ok": false, "error": e}));
                } else {
                    println!("BROKEN  bundle {}: {e}", file.display());
                }
                ExitCode::FAILURE
            }
        });
    }
    let settings = config.resolve()?;
    let store = super::open_store(&settings)?;
    let g = super::governance(&settings, &store)?;
    match cmd {
        AuditCommand::Verify { project, json, .. } => {
            let projects = store.list_projects().await?;
            let name_of = |id: &vigil_model::ProjectId| {
                projects
                    .iter()
                    .find(|p| &p.id == id)
                    .map_or_else(|| id.to_string(), |p| p.name.clone())
            };
            let reports = match project {
                Some(p) => vec![
                    g.audit
                        .verify(&super::project_id(&store, Some(&p)).await?)
                        .await?,
                ],
                None => g.audit.verify_all().await?,
            };
            if json {
                println!("{}", serde_json::to_string_pretty(&reports)?);
            } else if reports.is_empty() {
                println!("no audit entries yet");
            }
            let mut ok = true;
            for r in &reports {
                ok &= r.ok();
                if !json {
                    print_report(r, &name_of(&r.project_id));
                }
            }
            return Ok(if ok {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            });
        }
        AuditCommand::Export { project, out } => {
            let id = super::project_id(&store, Some(&project)).await?;
            let bytes = g.audit.export(&id).await?;
            std::fs::write(&out, &bytes)
                .with_context(|| format!("cannot write `{}`", out.display()))?;
            eprintln!(
                "wrote {} ({} bytes). Verify anywhere with:\n  vigil audit verify --bundle {} --public-key {}",
                out.display(),
                bytes.len(),
                out.display(),
                g.audit.public_key_hex()
            );
        }
        AuditCommand::PublicKey => println!("{}", g.audit.public_key_hex()),
        AuditCommand::Head { project, out } => {
            let id = super::project_id(&store, Some(&project)).await?;
            let cp = g.audit.checkpoint(&id).await?.context(
                "nothing to sign: the chain is empty or does not verify (`vigil audit verify`)",
            )?;
            std::fs::write(&out, serde_json::to_vec_pretty(&cp)?)
                .with_context(|| format!("cannot write `{}`", out.display()))?;
            eprintln!(
                "signed head #{} {} written to {}",
                cp.seq,
                cp.entry_hash,
                out.display()
            );
        }
        AuditCommand::Log {
            project,
            after,
            limit,
        } => {
            let id = super::project_id(&store, Some(&project)).await?;
            for r in store.audit_rows(&id, after, limit.clamp(1, 10_000)).await? {
                println!(
                    "#{:<6} {}  {:<22} {:<24} {}  {}",
                    r.seq,
                    format_rfc3339_nanos(r.time_ns),
                    r.action,
                    r.actor,
                    r.subject,
                    r.content.as_deref().unwrap_or("[erased]")
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn time_arg(name: &str, v: Option<&str>, default: i64) -> anyhow::Result<i64> {
    let Some(v) = v else { return Ok(default) };
    if let Some(secs) = vigil_model::parse_duration_secs(v) {
        return Ok(now_unix_nanos()
            - i64::try_from(secs).unwrap_or(i64::MAX / 1_000_000_000) * 1_000_000_000);
    }
    parse_rfc3339_nanos(v)
        .with_context(|| format!("`--{name}` must be RFC 3339 or a duration like 30d, got `{v}`"))
}

pub async fn compliance(settings: Settings, cmd: ComplianceCommand) -> anyhow::Result<()> {
    let ComplianceCommand::Report {
        framework,
        from,
        to,
        project,
        out,
    } = cmd;
    let framework = Framework::parse(&framework)
        .with_context(|| format!("`--framework` is soc2, hipaa or gdpr, got `{framework}`"))?;
    let now = now_unix_nanos();
    let from_ns = time_arg("from", from.as_deref(), now - 30 * 86_400 * 1_000_000_000)?;
    let to_ns = time_arg("to", to.as_deref(), now)?;
    anyhow::ensure!(from_ns <= to_ns, "`--from` is after `--to`");
    let store = super::open_store(&settings)?;
    let g = super::governance(&settings, &store)?;
    let id = super::project_id(&store, Some(&project)).await?;
    let report = compliance::build(
        &store,
        &g.audit,
        ReportInput {
            project: &id,
            project_name: &project,
            framework,
            from_ns,
            to_ns,
            retention: json!({
                "max_age_seconds": settings.retention.max_age_seconds,
                "max_size_bytes": settings.retention.max_size_bytes,
                "gc_interval_seconds": settings.gc_interval_secs,
            }),
            redaction_config: serde_json::to_value(&settings.governance.redaction)?,
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!(e))?;
    std::fs::create_dir_all(&out).with_context(|| format!("cannot create `{}`", out.display()))?;
    let stem = format!(
        "{}-report",
        serde_json::to_value(framework)?
            .as_str()
            .unwrap_or("compliance")
    );
    let json_path = out.join(format!("{stem}.json"));
    let html_path = out.join(format!("{stem}.html"));
    std::fs::write(&json_path, serde_json::to_vec_pretty(&report)?)?;
    std::fs::write(&html_path, compliance::to_html(&report))?;
    println!("{}", html_path.display());
    println!("{}", json_path.display());
    eprintln!(
        "audit chain {} · {} controls with evidence of {}",
        if report.audit_chain.ok() {
            "verified"
        } else {
            "BROKEN"
        },
        report
            .controls
            .iter()
            .filter(|c| c.status == "evidence")
            .count(),
        report.controls.len()
    );
    Ok(())
}

pub async fn guard(settings: Settings, cmd: GuardCommand) -> anyhow::Result<()> {
    match cmd {
        GuardCommand::CheckPolicy { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read `{}`", file.display()))?;
            let p =
                Policy::parse(&text).map_err(|e| anyhow::anyhow!("{}:\n{e}", file.display()))?;
            println!(
                "policy is valid: {} rules, default {:?}",
                p.rules.len(),
                p.default
            );
        }
        GuardCommand::SetPolicy { file, project } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("cannot read `{}`", file.display()))?;
            let store = super::open_store(&settings)?;
            let g = super::governance(&settings, &store)?;
            let id = super::project_id(&store, Some(&project)).await?;
            let actor = format!(
                "cli:{}",
                std::env::var("USER").unwrap_or_else(|_| "unknown".into())
            );
            let version = g
                .set_policy(&id, &text, &actor)
                .await
                .map_err(|e| match e {
                    vigil_governance::PolicyError::Invalid(m) => {
                        anyhow::anyhow!("{}:\n{m}", file.display())
                    }
                    e => anyhow::anyhow!(e),
                })?;
            println!("policy v{version} is now in force for project `{project}` (servers pick it up within 2 s)");
        }
        GuardCommand::ShowPolicy { project } => {
            let store = super::open_store(&settings)?;
            let id = super::project_id(&store, Some(&project)).await?;
            match store.get_policy(&id).await? {
                Some(p) => {
                    eprintln!(
                        "# v{} (updated {})",
                        p.version,
                        format_rfc3339_nanos(p.updated_ns)
                    );
                    print!("{}", p.source);
                }
                None => println!("no policy: every tool call is allowed (and recorded)"),
            }
        }
        GuardCommand::Approvals { project, status } => {
            let store = super::open_store(&settings)?;
            let id = super::project_id(&store, Some(&project)).await?;
            let status = match status.as_str() {
                "all" => None,
                s => Some(ApprovalStatus::parse(s).with_context(|| {
                    format!("`--status` is pending, approved, denied, expired or all, got `{s}`")
                })?),
            };
            for a in store.list_approvals(&id, status, 200).await? {
                println!(
                    "{}  {:<8}  {:<24} {}  {}",
                    a.id,
                    a.status.as_str(),
                    a.tool,
                    format_rfc3339_nanos(a.created_ns),
                    a.reason
                );
            }
        }
    }
    Ok(())
}

pub async fn erase(settings: Settings, args: EraseArgs) -> anyhow::Result<()> {
    let store = super::open_store(&settings)?;
    let g = super::governance(&settings, &store)?;
    let id = super::project_id(&store, Some(&args.project)).await?;
    let actor = format!(
        "cli:{}",
        std::env::var("USER").unwrap_or_else(|_| "unknown".into())
    );
    let r = g
        .erase_user(&id, &args.user, &actor)
        .await
        .map_err(|e| anyhow::anyhow!(e))?;
    println!(
        "erased: {} traces deleted, {} audit entries cleared (hashes kept), tombstone #{}",
        r.traces_deleted, r.audit_entries_cleared, r.tombstone_seq
    );
    Ok(())
}
