//! `vigil projects`, `vigil keys`, `vigil config check`, `vigil gc`.

use vigil_store::{ProjectStore, Scope, TraceStore};

use crate::cli::{GatewayKeysCommand, GcArgs, KeysCommand, ProjectsCommand, UsersCommand};
use crate::config::{Config, Settings};

pub async fn projects(settings: Settings, cmd: ProjectsCommand) -> anyhow::Result<()> {
    let store = super::open_store(&settings)?;
    match cmd {
        ProjectsCommand::List => {
            for p in store.list_projects().await? {
                println!("{:<16}  {}", p.id, p.name);
            }
        }
        ProjectsCommand::Create { name } => {
            let p = store.create_project(&name).await?;
            let key = store
                .create_api_key(&p.id, "first key", &[Scope::Ingest, Scope::Read])
                .await?;
            super::audit_cli(
                &settings,
                &store,
                &p.id,
                "project.created",
                &p.name,
                serde_json::json!({"name": p.name, "first_key": key.info.id}),
            )
            .await?;
            println!("created project `{}` (id {})", p.name, p.id);
            println!("API key (shown once): {}", key.secret);
        }
    }
    Ok(())
}

pub async fn users(settings: Settings, cmd: UsersCommand) -> anyhow::Result<()> {
    let store = super::open_store(&settings)?;
    match cmd {
        UsersCommand::Create { name, projects } => {
            let mut ids = Vec::new();
            for p in &projects {
                ids.push(super::project_id(&store, Some(p)).await?);
            }
            let password = match std::env::var(crate::config::env_vars::VIGIL_USER_PASSWORD) {
                Ok(p) => p,
                Err(_) => {
                    if std::io::IsTerminal::is_terminal(&std::io::stdin()) {
                        eprint!("password for `{name}` (input is shown; pipe it in to hide it): ");
                    }
                    let mut line = String::new();
                    std::io::stdin().read_line(&mut line)?;
                    line.trim_end_matches(['\r', '\n']).to_string()
                }
            };
            let user = store.create_user(&name, &password, &ids).await?;
            for id in &ids {
                super::audit_cli(
                    &settings,
                    &store,
                    id,
                    "user.created",
                    &user.name,
                    serde_json::json!({"user": user.name, "projects": projects}),
                )
                .await?;
            }
            println!(
                "created user `{}` with access to {}",
                user.name,
                projects.join(", ")
            );
        }
        UsersCommand::List => {
            for u in store.list_users().await? {
                let projects: Vec<&str> = u.projects.iter().map(|p| p.as_str()).collect();
                println!("{:<24}  {}", u.name, projects.join(", "));
            }
        }
    }
    Ok(())
}

pub async fn gateway_keys(settings: Settings, cmd: GatewayKeysCommand) -> anyhow::Result<()> {
    use vigil_store::{GatewayKeySpec, GatewayStore};
    let store = super::open_store(&settings)?;
    match cmd {
        GatewayKeysCommand::Create {
            project,
            name,
            team,
            user,
            models,
            rpm,
            tpm,
            budget,
            period,
        } => {
            let id = super::project_id(&store, Some(&project)).await?;
            let spec = GatewayKeySpec {
                name,
                team,
                user,
                models: models.into_iter().filter(|m| !m.is_empty()).collect(),
                rpm,
                tpm,
                budget_usd: budget,
                budget_period: period,
            };
            let (secret, info) = store.create_gateway_key(&id, spec).await?;
            super::audit_cli(
                &settings,
                &store,
                &id,
                "gateway_key.created",
                &info.id,
                serde_json::json!(info.spec),
            )
            .await?;
            // The secret alone on stdout, so scripts can capture it.
            println!("{secret}");
            eprintln!(
                "created gateway key {} for project `{project}`; it is not shown again",
                info.id
            );
        }
        GatewayKeysCommand::List { project } => {
            let id = super::project_id(&store, Some(&project)).await?;
            for k in store.list_gateway_keys(&id).await? {
                println!(
                    "{:<18} {:<10} {:<16} team={} user={} models={} rpm={} tpm={} budget={}{}",
                    k.id,
                    k.display,
                    k.spec.name,
                    k.spec.team.as_deref().unwrap_or("-"),
                    k.spec.user.as_deref().unwrap_or("-"),
                    if k.spec.models.is_empty() {
                        "*".to_string()
                    } else {
                        k.spec.models.join(",")
                    },
                    k.spec.rpm.map_or("-".into(), |v| v.to_string()),
                    k.spec.tpm.map_or("-".into(), |v| v.to_string()),
                    k.spec
                        .budget_usd
                        .map_or("-".into(), |v| format!("${v}/{}", k.spec.budget_period)),
                    if k.revoked { " (revoked)" } else { "" },
                );
            }
        }
        GatewayKeysCommand::Revoke { id, project } => {
            let p = super::project_id(&store, Some(&project)).await?;
            store.revoke_gateway_key(&p, &id).await?;
            super::audit_cli(
                &settings,
                &store,
                &p,
                "gateway_key.revoked",
                &id,
                serde_json::json!({}),
            )
            .await?;
            println!("revoked {id}");
        }
    }
    Ok(())
}

pub async fn keys(settings: Settings, cmd: KeysCommand) -> anyhow::Result<()> {
    let store = super::open_store(&settings)?;
    match cmd {
        KeysCommand::Create {
            project,
            name,
            scopes,
        } => {
            let id = super::project_id(&store, Some(&project)).await?;
            let scopes = Scope::parse_list(&scopes);
            anyhow::ensure!(
                !scopes.is_empty(),
                "`--scopes` must list some of: ingest, read, approve, admin"
            );
            let key = store.create_api_key(&id, &name, &scopes).await?;
            let names: Vec<&str> = scopes.iter().map(|s| s.as_str()).collect();
            super::audit_cli(
                &settings,
                &store,
                &id,
                "key.created",
                &key.info.id,
                serde_json::json!({"name": name, "scopes": names, "display": key.info.display}),
            )
            .await?;
            // The secret alone on stdout, so scripts can capture it.
            println!("{}", key.secret);
            eprintln!(
                "created key {} ({}) for project `{project}`; it is not shown again",
                key.info.id, key.info.display
            );
        }
        KeysCommand::List { project } => {
            let id = super::project_id(&store, Some(&project)).await?;
            for k in store.list_api_keys(&id).await? {
                let scopes: Vec<&str> = k.scopes.iter().map(|s| s.as_str()).collect();
                println!(
                    "{:<18}  {:<10}  {:<14}  {:<12}  {}",
                    k.id,
                    k.display,
                    k.name,
                    scopes.join(","),
                    if k.revoked { "revoked" } else { "active" }
                );
            }
        }
        KeysCommand::Revoke { key_id, project } => {
            let id = super::project_id(&store, Some(&project)).await?;
            store.revoke_api_key(&id, &key_id).await?;
            super::audit_cli(
                &settings,
                &store,
                &id,
                "key.revoked",
                &key_id,
                serde_json::json!({}),
            )
            .await?;
            println!("revoked {key_id}; servers stop accepting it within 5 seconds");
        }
    }
    Ok(())
}

pub fn config_check(config: &Config) -> anyhow::Result<()> {
    let s = config.resolve()?;
    println!("configuration is valid");
    println!("  server.api_addr          {}", s.api_addr);
    println!("  server.otlp_http_addr    {}", s.otlp_http_addr);
    println!("  server.otlp_grpc_addr    {}", s.otlp_grpc_addr);
    println!("  server.insecure_local    {}", s.insecure_local);
    println!("  storage.data_dir         {}", s.data_dir.display());
    println!("  storage.durability       {:?}", s.durability);
    println!("  ingest.max_body_size     {} bytes", s.max_body_bytes);
    println!(
        "  retention.max_age        {:?} s",
        s.retention.max_age_seconds
    );
    println!(
        "  retention.max_size       {:?} bytes",
        s.retention.max_size_bytes
    );
    println!("  prices                   {} overrides", s.prices.len());
    Ok(())
}

pub async fn gc(mut config: Config, args: GcArgs) -> anyhow::Result<()> {
    if let Some(v) = args.max_age {
        config.retention.max_age = v;
    }
    if let Some(v) = args.max_size {
        config.retention.max_size = v;
    }
    let settings = config.resolve()?;
    let store = super::open_store(&settings)?;
    let r = store.gc(&settings.retention).await?;
    println!(
        "deleted {} traces ({} spans); live data {} → {} bytes",
        r.traces_deleted, r.spans_deleted, r.bytes_before, r.bytes_after
    );
    Ok(())
}
