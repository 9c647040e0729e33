"""One catalog per family of swappable parts: the only place that knows a family's names.

A family is a config group whose options each have a schema of their own (``model``: its ``arch``; ``likelihood``,
``prior``, ``loss``: their ``name``). Each option registers itself once, on its schema::

    @OBJECTIVES.register(build="vae_cli.objectives.iwae:IWAE")
    @dataclass
    class IWAEConfig(LossConfig):
        name: str = "iwae"
        ...

which records the option's name (the schema's default of the family key), its schema and where its builder is.
Validation, the override preflight, Hydra's ConfigStore and the builders all read the catalog. The builder is named
as ``"package.module:attribute"`` and imported only when a model is built, so the catalog (like all of
``vae_cli.config``) imports no torch; a builder must live in the family's own package (``Catalog.package``), so
the layering holds for these imports too (tests/unit/test_catalogs.py checks both).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar


@dataclass(frozen=True)
class Entry:
    """One option of a family: its name, its schema, where its builder is, and facts the checks read."""

    name: str
    schema: type
    build: str  # "vae_cli.<family package>.<module>:<attribute>"
    facts: dict[str, Any] = field(default_factory=dict)

    def __getattr__(self, fact: str) -> Any:
        try:
            return self.__dict__["facts"][fact]
        except KeyError:
            raise AttributeError(f"{self.name} has no fact {fact!r}") from None


E = TypeVar("E", bound=Entry)


class Catalog(Generic[E]):
    """The options of one family in registration order, with the facts every option of it declares."""

    def __init__(
        self, group: str, key: str, schemas: str, package: str, defaults: dict[str, Any] | None = None
    ) -> None:
        self.group = group  # the config group: model, likelihood, prior, loss
        self.key = key  # the key that names the option: arch or name
        self.schemas_module = schemas  # the module whose schemas register themselves here
        self.package = package  # where the builders live
        self.defaults = dict(defaults or {})  # the facts of an option that declares none of them
        self._entries: dict[str, Entry] = {}

    @property
    def entries(self) -> dict[str, Entry]:
        """Every option, once the schema module has registered them (imported here on first use)."""
        if not self._entries:
            importlib.import_module(self.schemas_module)
        return self._entries

    def register(self, build: str, **facts: Any) -> Callable[[type], type]:
        """A class decorator: register the schema under the name its ``key`` field defaults to."""
        unknown = set(facts) - set(self.defaults)
        if unknown:
            raise TypeError(f"{self.group} options declare only {sorted(self.defaults)}; got {sorted(unknown)}")

        def add(schema: type) -> type:
            name = str(getattr(_default_of(schema, self.key), "value", _default_of(schema, self.key)))
            if name in self._entries:
                raise ValueError(f"{self.group} option {name!r} is registered twice")
            self._entries[name] = Entry(name, schema, build, {**self.defaults, **facts})
            return schema

        return add

    def __contains__(self, name: object) -> bool:
        return str(getattr(name, "value", name)) in self.entries

    def __getitem__(self, name: Any) -> Entry:
        key = str(getattr(name, "value", name))
        if key not in self.entries:
            raise KeyError(f"unknown {self.group} {key!r} (known: {', '.join(self.entries)})")
        return self.entries[key]

    def __iter__(self) -> Iterator[Entry]:
        return iter(self.entries.values())

    def names(self) -> tuple[str, ...]:
        return tuple(self.entries)

    def schemas(self) -> dict[str, type]:
        return {name: entry.schema for name, entry in self.entries.items()}

    def option_of(self, node: Any) -> str:
        """The option a config node of this group is (its ``key``), as a string ("" for None)."""
        value = node.get(self.key) if node is not None else None
        return str(getattr(value, "value", value)) if value is not None else ""

    def load(self, name: Any) -> Any:
        """The builder of option ``name``, imported now (torch loads here, not when the catalog does)."""
        return load_attribute(self[name].build, self.package)


def load_attribute(path: str, package: str | tuple[str, ...]) -> Any:
    """``"module:attribute"`` imported; the module must be inside ``package`` (or one of them): a builder of another
    layer would be an import the layer contract cannot see."""
    module, _, attribute = path.partition(":")
    packages = (package,) if isinstance(package, str) else package
    if not any(module == p or module.startswith(p + ".") for p in packages):
        raise ValueError(f"{path} is outside {', '.join(packages)}: a builder must live in its family's package")
    return getattr(importlib.import_module(module), attribute)


def _default_of(schema: type, key: str) -> Any:
    for f in dataclasses.fields(schema):
        if f.name == key:
            return f.default
    raise TypeError(f"{schema.__name__} has no field {key!r}")


# The five families. Their options register themselves in their schema modules (config/architectures.py,
# likelihoods.py, priors.py, objectives.py), imported on a catalog's first use; the facts each option may declare,
# with their defaults:
# latent: what the model's latent is: vector (one Gaussian latent vector: every objective and prior applies),
# layers (a hierarchy of conditional Gaussian layers with its own prior), code_grid (a VQ-VAE's one-hot codes).
ARCHITECTURES: Catalog = Catalog(
    "model", "arch", "vae_cli.config.architectures", "vae_cli.models", {"latent": "vector"}
)
LIKELIHOODS: Catalog = Catalog("likelihood", "name", "vae_cli.config.likelihoods", "vae_cli.models", {})
# own: the model's own prior (N(0, I) for a flat model, the hierarchy's, a VQ-VAE's uniform codes);
# kl_per_dim: the KL to it is in closed form per latent dimension; code_prior: a prior over a VQ-VAE's codes.
# geometry: the space its z lives in (flat R^D, the sphere S^{D-1}, the Poincare ball), which the posterior's must be.
PRIOR_FACTS = {"own": False, "kl_per_dim": False, "code_prior": False, "geometry": "flat"}
PRIORS: Catalog = Catalog("prior", "name", "vae_cli.config.priors", "vae_cli.models", PRIOR_FACTS)
# flat_only: works on the aggregate posterior of one latent vector (total correlation, covariances, MMD);
# code_grid: also trains a VQ-VAE (a one-hot posterior); min_batch: (the least batch size, what the objective does
# with the batch that needs it): a term is a statistic of the batch.
# posterior: what the objective asks of q(z|x): samples and log q at them (any), z in flat R^D (flat: gradients in
# z), a diagonal Gaussian's (mu, logvar) (gaussian: per-dimension densities, covariances), the Gaussian head's mean
# as a deterministic code (point); iw_gradient: its
# gradient averages several samples' weights (a score-function correction of the sampler, vMF's, has no place in it).
# bound: the trained model has a likelihood bound (an encoder distribution and a KL): an autoencoder whose encoder is
# a point (loss=ae, wae, rae, aae) has none, and vae-eval reports reconstruction and sample quality instead.
OBJECTIVE_FACTS = {
    "bound": True,
    "flat_only": False,
    "code_grid": False,
    "min_batch": (1, ""),
    "posterior": "any",
    "iw_gradient": False,
}
OBJECTIVES: Catalog = Catalog("loss", "name", "vae_cli.config.objectives", "vae_cli.objectives", OBJECTIVE_FACTS)
# geometry: as a prior's; dreg: log q with stopped parameters at a reparameterized z (DReG);
# score_correction: its sampler's gradient has a score-function term (a rejection sampler's).
POSTERIOR_FACTS = {"geometry": "flat", "dreg": False, "score_correction": False}
POSTERIORS: Catalog = Catalog("posterior", "name", "vae_cli.config.posteriors", "vae_cli.models", POSTERIOR_FACTS)
# The post-hoc latent samplers (vae-fit-sampler; not a vae-train group): fitted: it learns from a run's training
# codes (the model's own prior is not fitted).
SAMPLERS: Catalog = Catalog("sampler", "name", "vae_cli.config.samplers", "vae_cli.samplers", {"fitted": True})
FAMILIES: dict[str, Catalog] = {c.group: c for c in (ARCHITECTURES, LIKELIHOODS, PRIORS, OBJECTIVES, POSTERIORS)}
