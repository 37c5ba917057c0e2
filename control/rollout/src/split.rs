//! A rollout's progress in the policy store: the weights of the TrafficSplit it drives, and
//! annotations on that split naming the rollout, its generation, phase and step. Weights and
//! progress change in one policy version, so a restarted (or another) control plane reads back
//! exactly the step the sidecars were sent.

use std::collections::BTreeMap;
use weft_policy::model::{SplitRoute, TargetRef, TrafficSplitSpec, WeightedVersion};
use weft_policy::{Document, Kind, Metadata, PolicySet, Spec, API_VERSION};

use crate::machine::{Phase, Plan, Progress};

pub const ANNOTATION_ROLLOUT: &str = "rollout.weft.dev/name";
pub const ANNOTATION_GENERATION: &str = "rollout.weft.dev/generation";
pub const ANNOTATION_PHASE: &str = "rollout.weft.dev/phase";
pub const ANNOTATION_STEP: &str = "rollout.weft.dev/step";

/// The TrafficSplit of `plan`'s service (there is at most one per service).
pub fn split_of<'a>(set: &'a PolicySet, plan: &Plan) -> Option<&'a Document> {
    set.of_kind(Kind::TrafficSplit).find(|d| {
        d.namespace() == plan.namespace && d.target().is_some_and(|t| t.service == plan.service)
    })
}

/// The progress the store holds for `plan`'s generation (`None`: not started).
pub fn stored_progress(set: &PolicySet, plan: &Plan) -> Option<Progress> {
    let doc = split_of(set, plan)?;
    let a = &doc.metadata.annotations;
    if a.get(ANNOTATION_ROLLOUT) != Some(&plan.name)
        || a.get(ANNOTATION_GENERATION) != Some(&plan.generation)
    {
        return None;
    }
    let phase = Phase::parse(a.get(ANNOTATION_PHASE)?)?;
    let step: usize = a.get(ANNOTATION_STEP)?.parse().ok()?;
    let Spec::TrafficSplit(s) = &doc.spec else {
        return None;
    };
    let weight = s.split.iter().find(|w| w.version == plan.canary)?.weight;
    let weight_bp = weft_policy::units::percent_to_bp(weight).ok()?;
    Some(Progress {
        phase,
        step: step.min(plan.steps.len().saturating_sub(1)),
        weight_bp,
    })
}

/// Why a transition cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SplitError {
    #[error("TrafficSplit/{0} exists and targets another service; rename the Rollout")]
    NameTaken(String),
}

/// The documents that put `progress` in force: the service's TrafficSplit (its routes, sticky
/// and cohort settings kept; the split replaced by stable and canary) and, on promotion, the
/// Service with the canary as its stable version.
pub fn documents_for(
    set: &PolicySet,
    plan: &Plan,
    progress: Progress,
) -> Result<Vec<Document>, SplitError> {
    let canary = f64::from(progress.weight_bp) / 100.0;
    let split = vec![
        WeightedVersion {
            version: plan.stable.clone(),
            weight: f64::from(10_000 - progress.weight_bp.min(10_000)) / 100.0,
        },
        WeightedVersion {
            version: plan.canary.clone(),
            weight: canary,
        },
    ];
    let mut doc = match split_of(set, plan) {
        Some(existing) => existing.clone(),
        None => {
            let key = weft_policy::DocKey {
                kind: Kind::TrafficSplit,
                namespace: plan.namespace.clone(),
                name: plan.name.clone(),
            };
            if set.get(&key).is_some() {
                return Err(SplitError::NameTaken(format!(
                    "{}/{}",
                    plan.namespace, plan.name
                )));
            }
            Document {
                api_version: API_VERSION.to_string(),
                metadata: Metadata {
                    name: plan.name.clone(),
                    namespace: Some(plan.namespace.clone()),
                    labels: BTreeMap::new(),
                    annotations: BTreeMap::new(),
                },
                spec: Spec::TrafficSplit(TrafficSplitSpec {
                    target: TargetRef {
                        service: plan.service.clone(),
                        versions: None,
                    },
                    path_prefix: None,
                    routes: Vec::new(),
                    split: Vec::new(),
                    sticky: None,
                    cohort: None,
                    mirror: None,
                    dry_run: false,
                }),
            }
        }
    };
    if let Spec::TrafficSplit(s) = &mut doc.spec {
        s.split = split;
        if let Some(cohort) = &plan.ab {
            // The A/B route: present while the rollout runs, gone once it has finished.
            let route = SplitRoute {
                matches: cohort.clone(),
                version: plan.canary.clone(),
            };
            s.routes.retain(|r| *r != route);
            if !progress.phase.finished() {
                s.routes.insert(0, route);
            }
        }
    }
    let a = &mut doc.metadata.annotations;
    a.insert(ANNOTATION_ROLLOUT.into(), plan.name.clone());
    a.insert(ANNOTATION_GENERATION.into(), plan.generation.clone());
    a.insert(ANNOTATION_PHASE.into(), progress.phase.as_str().into());
    a.insert(ANNOTATION_STEP.into(), progress.step.to_string());
    let mut out = vec![doc];
    if progress.phase == Phase::Promoted {
        let service = set
            .of_kind(Kind::Service)
            .find(|d| d.namespace() == plan.namespace && d.metadata.name == plan.service);
        if let Some(service) = service {
            let mut service = service.clone();
            if let Spec::Service(s) = &mut service.spec {
                s.stable_version = Some(plan.canary.clone());
            }
            out.push(service);
        }
    }
    Ok(out)
}
