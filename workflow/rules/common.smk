# Validation, grid expansion and the named input functions every rule uses.
import json
import shlex
import sys

from snakemake.exceptions import WorkflowError
from snakemake.utils import validate

from sgdnoise.config import ConfigError, canonical_json, expand_study
from sgdnoise.workflow_plan import analyses_of_stage, data_spec_id, figures_of


# a link to the package's study schema, the one `sgdnoise validate` applies
validate(config, schema="../schemas/config.schema.yaml")

# The command line of every rule: the package of the interpreter that runs Snakemake (the
# same in a SLURM job's Snakemake), found without an activated environment or PATH.
SGDNOISE = f"{shlex.quote(sys.executable)} -m sgdnoise"

RESULTS = config["results"]
try:
    STUDIES = {
        name: {point.point_id: point for point in expand_study(name, study)}
        for name, study in config["studies"].items()
    }
except ConfigError as error:
    raise WorkflowError(f"invalid configuration: {error}") from None

# The studies whose points train several to a job (points_per_job > 1): study -> batches
# of point ids in grid order. Their runs come from the rules of train.smk's loop, the other
# studies' from train_replicas.
TRAIN_BATCHES = {
    name: [list(STUDIES[name])[i : i + size] for i in range(0, len(STUDIES[name]), size)]
    for name, study in config["studies"].items()
    if (size := study.get("points_per_job", 1)) > 1
}
ONE_POINT_STUDIES = [name for name in STUDIES if name not in TRAIN_BATCHES]

# data spec id of every point, and one point config per spec (computed once: input
# functions run for every job of the DAG)
DATA_SPEC = {
    study: {pid: data_spec_id(point.config) for pid, point in points.items()}
    for study, points in STUDIES.items()
}
SPEC_POINT = {
    study: {spec: pid for pid, spec in reversed(list(specs.items()))}
    for study, specs in DATA_SPEC.items()
}


wildcard_constraints:
    study="|".join(STUDIES) or "NO_STUDY",
    point=r"[A-Za-z0-9_.=+\-]+",
    spec=r"[a-z_]+-[0-9a-f]{12}",
    figure=r"[a-z_]+",


def point_of(wildcards):
    """The GridPoint of a {study}/{point} pair."""
    return STUDIES[wildcards.study][wildcards.point]


def point_coordinates_text(wildcards):
    """The point's grid values as JSON (length-1 dimensions of its run artifact)."""
    return json.dumps(point_of(wildcards).coordinates)


def point_config_text(wildcards):
    """The resolved config of a point as canonical JSON (a rule param: edits retrain)."""
    return canonical_json(point_of(wildcards).config)


def train_batch_manifest(study: str, point_ids: list[str]) -> str:
    """The `sgdnoise points --manifest` of a batch: each point's config, data, grid values
    and run path (JSON; a rule param, so editing one point retrains its batch)."""
    entries = []
    for point_id in point_ids:
        point = STUDIES[study][point_id]
        entries.append(
            {
                "config": point.config.to_mapping(),
                "data": data_path(study, point_id),
                "coordinates": point.coordinates,
                "out": run_path(study, point_id),
            }
        )
    manifest = json.dumps(entries, sort_keys=True)
    if len(manifest) > 100_000:  # one argument of the job's shell command (limit 128 KiB)
        raise WorkflowError(
            f"study {study}: points_per_job is too large for its points' configs "
            f"({len(manifest)} characters in one job's command); use a smaller value"
        )
    return manifest


def study_text(wildcards):
    """The study's section of the config as canonical JSON (a rule param: edits rerun)."""
    return canonical_json(config["studies"][wildcards.study])


def data_path(study: str, point_id: str) -> str:
    """The data artifact a point trains on (shared by points with the same data spec)."""
    return f"{RESULTS}/{study}/data/{DATA_SPEC[study][point_id]}.nc"


def run_path(study: str, point_id: str) -> str:
    """The run artifact of a point."""
    return f"{RESULTS}/{study}/runs/{point_id}.nc"


def data_file(wildcards):
    """data_path of a {study}/{point} pair."""
    return data_path(wildcards.study, wildcards.point)


def spec_point_config_text(wildcards):
    """The config of a point of the study that uses data spec {spec} (canonical JSON)."""
    point_id = SPEC_POINT[wildcards.study].get(wildcards.spec)
    if point_id is None:
        raise WorkflowError(f"no point of study {wildcards.study} uses data spec {wildcards.spec}")
    return canonical_json(STUDIES[wildcards.study][point_id].config)


def study_runs(wildcards):
    """Every run artifact of a study."""
    return [run_path(wildcards.study, p) for p in STUDIES[wildcards.study]]


def final_outputs():
    """Every study's summary and figures."""
    outputs = []
    for name, study in config["studies"].items():
        outputs.append(f"{RESULTS}/{name}/summary.nc")
        for figure in figures_of(study.get("analyses", [])):
            outputs.append(f"{RESULTS}/{name}/figures/{figure}.png")
    return outputs


def two_time_needed(wildcards) -> bool:
    """Whether a point measures the response (run.response.waiting_times not empty)."""
    return bool(point_of(wildcards).config.run.response.waiting_times)


def dmft_asked(study: str) -> bool:
    """Whether a study asks for the DMFT beside its simulations (analysis `dmft`)."""
    return "dmft" in config["studies"][study].get("analyses", [])


def dmft_solver_options(wildcards):
    """The solver options of `sgdnoise dmft` (the study's `dmft` settings; seed = run.seed)."""
    settings = config["studies"][wildcards.study]["dmft"]
    seed = point_of(wildcards).config.run.seed
    return (
        f"--paths {settings['paths']} --solver-seeds {settings['solver_seeds']}"
        f" --tolerance {settings['tolerance']} --max-iterations {settings['max_iterations']}"
        f" --seed {seed}"
    )


def fit_inputs(wildcards):
    """The run of a point, its two-time artifact when it measures the response, and its
    DMFT solve when the study asks for the theory."""
    directory = f"{RESULTS}/{wildcards.study}"
    inputs = {"run": f"{directory}/runs/{wildcards.point}.nc"}
    if two_time_needed(wildcards):
        inputs["two_time"] = f"{directory}/two_time/{wildcards.point}.nc"
    if dmft_asked(wildcards.study):
        inputs["dmft"] = f"{directory}/dmft/{wildcards.point}.nc"
    return inputs


def fit_options(wildcards, input):
    """The --two-time and --dmft options of `sgdnoise fit` (for the inputs it has; paths
    quoted for the shell)."""
    names = [name for name in ("two_time", "dmft") if name in input.keys()]
    return " ".join(
        f"--{name.replace('_', '-')} {shlex.quote(getattr(input, name))}" for name in names
    )


def study_fits(wildcards):
    """The fits artifacts of a study's points (none if no per-point analysis is asked)."""
    analyses = config["studies"][wildcards.study].get("analyses", [])
    if not analyses_of_stage(analyses, "fit"):
        return []
    return [f"{RESULTS}/{wildcards.study}/fits/{p}.nc" for p in STUDIES[wildcards.study]]
