"""scikit-learn: estimators and the objects fitted estimators hold."""

from __future__ import annotations

import types

from modelserve.registry.allowlist.core import (
    Allowed,
    Table,
    Use,
    inert_class,
    is_class,
    plain_class,
)


def _not_a_job_runner(obj: object) -> bool:
    import joblib

    return is_class(obj) and not issubclass(obj, (joblib.Parallel, joblib.Memory))  # type: ignore[arg-type]


def _function(obj: object) -> bool:
    return isinstance(obj, types.FunctionType)


def _extension_type(obj: object) -> bool:
    """A Cython class (its ``__new__`` is its own C allocator, not ``object.__new__``)."""
    return is_class(obj) and not plain_class(obj)


def _distance_metric(obj: object) -> bool:
    # PyFuncDistance holds and calls a Python function: never.
    return _extension_type(obj) and not getattr(obj, "__name__", "").startswith("PyFunc")


_CYTHON_UNPICKLE = (
    "Cython's generated unpickler: checks the layout checksum, allocates the class it is given "
    "(which must be constructible) and sets its C fields from the state"
)
_NEW_OBJ = "returns cls.__new__(cls) for a constructible class; BUILD then sets its arrays"
_SCORING_MODULES = (
    "sklearn.metrics._classification",
    "sklearn.metrics._regression",
    "sklearn.metrics._ranking",
    "sklearn.feature_selection._univariate_selection",
    "sklearn.feature_selection._mutual_info",
)

TABLE = Table(
    family="scikit-learn",
    rows=(
        Allowed(
            "sklearn.tree._tree",
            "Tree",
            Use.CALL,
            "a fitted tree: its constructor only "
            "sizes the node arrays from three counts; BUILD fills them",
            admits=is_class,
        ),
        Allowed(
            "sklearn._loss._loss",
            "Cy*",
            Use.CALL,
            "Cython loss formulas; pickled as a call with no or numeric arguments",
            admits=_extension_type,
        ),
        Allowed(
            "sklearn._loss._loss", "__pyx_unpickle_Cy*", Use.CALL, _CYTHON_UNPICKLE, class_args=(0,)
        ),
        *(
            Allowed(module, "newObj", Use.CALL, _NEW_OBJ, class_args=(0,))
            for module in (
                "sklearn.metrics._dist_metrics",
                "sklearn.neighbors._kd_tree",
                "sklearn.neighbors._ball_tree",
            )
        ),
        Allowed(
            "sklearn.metrics._dist_metrics",
            "*Distance*",
            Use.CONSTRUCT,
            "distance metrics: Cython objects holding parameters",
            admits=_distance_metric,
        ),
        Allowed(
            "sklearn.neighbors._kd_tree",
            "KDTree*",
            Use.CONSTRUCT,
            "a fitted KD tree: arrays",
            admits=_extension_type,
        ),
        Allowed(
            "sklearn.neighbors._ball_tree",
            "BallTree*",
            Use.CONSTRUCT,
            "a fitted ball tree: arrays",
            admits=_extension_type,
        ),
        Allowed(
            "sklearn._loss.*",
            "*",
            Use.CONSTRUCT,
            "loss and link objects: formulas, an "
            "interval, no code from the file (callable, but only as the loss they are)",
            admits=plain_class,
        ),
        Allowed(
            "sklearn.gaussian_process.kernels",
            "*",
            Use.CONSTRUCT,
            "kernels: hyperparameters and the formulas of their class",
            admits=plain_class,
        ),
        Allowed(
            "sklearn.compose._column_transformer",
            "make_column_selector",
            Use.CONSTRUCT,
            "a column selector: a regex and dtypes",
            admits=plain_class,
        ),
        Allowed(
            "sklearn.*",
            "*",
            Use.CONSTRUCT,
            "estimators and the plain objects they hold, "
            "created empty and filled by BUILD; never callable or descriptor classes "
            "(decorators such as deprecated, scorers, callbacks)",
            admits=inert_class,
        ),
        Allowed(
            "sklearn.*",
            "*",
            Use.VALUE,
            "a class named as data (a parameter's type)",
            admits=_not_a_job_runner,
        ),
        *(
            Allowed(
                module,
                "*",
                Use.VALUE,
                "a pure scoring function named as a parameter "
                "(SelectKBest(score_func=f_classif)); called on data only by the model",
                admits=_function,
            )
            for module in _SCORING_MODULES
        ),
    ),
    denied=(
        ("sklearn.externals", "vendored third-party code"),
        ("sklearn.datasets", "downloads and reads files"),
        ("sklearn.experimental", "importing it changes scikit-learn"),
        ("sklearn.utils.parallel", "runs jobs"),
        ("sklearn.utils._joblib", "runs jobs"),
        ("sklearn.utils._testing", "test helpers"),
        ("sklearn.utils._show_versions", "inspects the environment"),
        ("sklearn.callback", "progress callbacks"),
    ),
)
