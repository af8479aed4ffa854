//! Failure modes tracked like bugs. The lifecycle moves on evidence, not on someone remembering:
//!
//! - **open → annotated** when a human confirmed an example trace;
//! - **annotated → tested** when the evaluator named by the failure mode exists (it detects it);
//! - **→ fixed** when someone names the deployment (`service.version`) meant to fix it; the
//!   failure rate before the fix is kept as the baseline;
//! - **fixed → verified** when, over at least `MIN_SESSIONS` sessions of the fixed version, the
//!   evaluator's failure rate fell below half the baseline;
//! - **verified → regressed** (reopened) when, over at least `MIN_SESSIONS` sessions since it was
//!   verified of the fixed version or a later one, the rate rose back: to twice the verified rate
//!   and at least half the baseline (older versions still running in a partial rollout do not
//!   count).
//!
//! Rates are failing sessions per 1,000 scored sessions (a trace without a session counts as one).

use vigil_model::{now_unix_nanos, ProjectId};
use vigil_store::{FailureModeChange, FailureModeRow, Store};

/// Fewest sessions a rate is trusted on.
pub const MIN_SESSIONS: u64 = 20;
const DAY_NS: i64 = 86_400_000_000_000;
/// How far back the rate before a fix is measured.
const BASELINE_WINDOW_NS: i64 = 7 * DAY_NS;

/// The next status of a failure mode, if the evidence moves it, with the reason.
pub async fn next_status(
    store: &dyn Store,
    fm: &FailureModeRow,
    now_ns: i64,
) -> Result<Option<(String, String, FailureModeChange)>, vigil_store::Error> {
    let change = |to: &str, reason: String, mut c: FailureModeChange| {
        c.status = Some((to.to_string(), reason.clone()));
        Some((to.to_string(), reason, c))
    };
    let evaluator = fm.evaluator.as_deref();
    match fm.status.as_str() {
        "open" if fm.human_examples > 0 => Ok(change(
            "annotated",
            format!("a human confirmed {} example trace(s)", fm.human_examples),
            FailureModeChange::default(),
        )),
        "annotated" => {
            let Some(name) = evaluator else {
                return Ok(None);
            };
            let exists = store
                .list_evaluators(Some(&fm.project_id))
                .await?
                .iter()
                .any(|e| e.name == name && e.enabled);
            Ok(if exists {
                change(
                    "tested",
                    format!("evaluator `{name}` covers it"),
                    FailureModeChange::default(),
                )
            } else {
                None
            })
        }
        "fixed" => {
            let (Some(name), Some(version)) = (evaluator, fm.fixed_in.as_deref()) else {
                return Ok(None);
            };
            let after = store
                .failure_rate(
                    &fm.project_id,
                    name,
                    now_ns - BASELINE_WINDOW_NS,
                    now_ns,
                    Some(version),
                    None,
                )
                .await?;
            let (Some(rate), baseline) = (after.per_thousand(), fm.baseline_rate.unwrap_or(0.0))
            else {
                return Ok(None);
            };
            let fell = if baseline > 0.0 {
                rate < baseline / 2.0
            } else {
                rate == 0.0
            };
            Ok((after.sessions >= MIN_SESSIONS && fell).then(|| {
                change(
                    "verified",
                    format!(
                        "{rate:.0} failing sessions per 1,000 on {version} ({} sessions), down from {baseline:.0} before the fix",
                        after.sessions
                    ),
                    FailureModeChange {
                        verified_rate: Some(Some(rate)),
                        ..FailureModeChange::default()
                    },
                )
            }).flatten())
        }
        "verified" => {
            let (Some(name), Some(fixed)) = (evaluator, fm.fixed_in.as_deref()) else {
                return Ok(None);
            };
            // Only the fixed version and later ones count: during a partial rollout, the old
            // version still failing is not a regression of the fix.
            let deployments = store.deployments(&fm.project_id).await?;
            let fixed_at = deployments
                .iter()
                .find(|(v, _)| v == fixed)
                .map_or(i64::MIN, |(_, t)| *t);
            let verified = fm.verified_rate.unwrap_or(0.0);
            let baseline = fm.baseline_rate.unwrap_or(0.0);
            let bar = (2.0 * verified).max(baseline / 2.0).max(1.0);
            for (version, first_seen) in &deployments {
                if *first_seen < fixed_at {
                    continue;
                }
                let since = store
                    .failure_rate(
                        &fm.project_id,
                        name,
                        fm.updated_ns,
                        now_ns,
                        Some(version),
                        None,
                    )
                    .await?;
                let Some(rate) = since.per_thousand() else {
                    continue;
                };
                if since.sessions >= MIN_SESSIONS && rate >= bar {
                    return Ok(change(
                        "regressed",
                        format!(
                            "reopened: {rate:.0} failing sessions per 1,000 on {version} since it was verified ({} sessions), was {verified:.0}",
                            since.sessions
                        ),
                        FailureModeChange::default(),
                    ));
                }
            }
            Ok(None)
        }
        _ => Ok(None),
    }
}

/// Moves every failure mode as far as the evidence allows; returns how many changed.
pub async fn advance_all(store: &dyn Store) -> Result<usize, vigil_store::Error> {
    let now = now_unix_nanos();
    let mut changed = 0;
    for fm in store.list_failure_modes(None).await? {
        let mut current = fm;
        // open → annotated → tested can happen in one pass.
        for _ in 0..3 {
            let Some((to, _, c)) = next_status(store, &current, now).await? else {
                break;
            };
            store
                .change_failure_mode(&current.project_id, &current.id, c)
                .await?;
            changed += 1;
            current.status = to;
            current.updated_ns = now;
        }
    }
    Ok(changed)
}

/// Records that `version` is meant to fix the failure mode, with the rate before it as baseline.
pub async fn mark_fixed(
    store: &dyn Store,
    project: &ProjectId,
    id: &str,
    version: &str,
) -> Result<FailureModeRow, String> {
    let e = |e: vigil_store::Error| e.to_string();
    let fm = store
        .list_failure_modes(Some(project))
        .await
        .map_err(e)?
        .into_iter()
        .find(|f| f.id == id)
        .ok_or_else(|| format!("failure mode `{id}` not found"))?;
    let Some(evaluator) = fm.evaluator.as_deref() else {
        return Err("a failure mode needs an evaluator before a fix can be verified".into());
    };
    let now = now_unix_nanos();
    let before = store
        .failure_rate(
            project,
            evaluator,
            now - BASELINE_WINDOW_NS,
            now,
            None,
            Some(version),
        )
        .await
        .map_err(e)?;
    let baseline = before.per_thousand();
    store
        .change_failure_mode(
            project,
            id,
            FailureModeChange {
                status: Some((
                    "fixed".into(),
                    format!(
                        "fix shipped in {version}; before it: {} failing sessions per 1,000 ({} sessions)",
                        baseline.map_or("unknown".into(), |b| format!("{b:.0}")),
                        before.sessions
                    ),
                )),
                fixed_in: Some(Some(version.to_string())),
                baseline_rate: Some(baseline),
                verified_rate: Some(None),
            },
        )
        .await
        .map_err(e)?;
    store
        .list_failure_modes(Some(project))
        .await
        .map_err(e)?
        .into_iter()
        .find(|f| f.id == id)
        .ok_or_else(|| format!("failure mode `{id}` not found"))
}
