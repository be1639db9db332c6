"""scikit-learn importer: MLPs alone and in Pipelines, against predict_proba / predict."""

import numpy as np
import pytest

from nnexposed import Network
from tests.helpers import DTYPES, assert_close
from tests.import_helpers import fit_quietly, sklearn_data

SKLEARN_HIDDEN = ["identity", "logistic", "tanh", "relu"]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", SKLEARN_HIDDEN)
@pytest.mark.parametrize("kind, n_outputs, output_activation", [
    ("binary", 2, "sigmoid"), ("multiclass", 4, "softmax"), ("multilabel", 3, "sigmoid"),
])
def test_sklearn_classifier(dtype, activation, kind, n_outputs, output_activation):
    neural_network = pytest.importorskip("sklearn.neural_network",
                                         reason="scikit-learn is not installed")
    x, y = sklearn_data(kind, dtype)
    classifier = fit_quietly(neural_network.MLPClassifier(
        hidden_layer_sizes=(7, 6), activation=activation, max_iter=60, random_state=0), x, y)
    network = Network.from_sklearn(classifier)
    assert network.dtype == dtype
    activations = [layer.activation for layer in network.layers]
    assert activations[:3] == [{"identity": "linear", "logistic": "sigmoid"}.get(
        activation, activation)] * 2 + [output_activation]
    if kind == "binary":
        assert network.sizes == (5, 7, 6, 1, 2) and activations[3] == "linear"
    result = network(x)
    assert result.shape == (len(x), n_outputs)
    assert_close(result, classifier.predict_proba(x).astype(dtype), dtype)
    assert_close(network(x[0]), result[0], dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", SKLEARN_HIDDEN)
@pytest.mark.parametrize("kind", ["regression", "multi-output"])
def test_sklearn_regressor(dtype, activation, kind):
    neural_network = pytest.importorskip("sklearn.neural_network",
                                         reason="scikit-learn is not installed")
    x, y = sklearn_data(kind, dtype)
    regressor = fit_quietly(neural_network.MLPRegressor(
        hidden_layer_sizes=(8,), activation=activation, max_iter=60, random_state=1), x, y)
    network = Network.from_sklearn(regressor)
    assert network.layers[-1].activation == "linear"
    expected = regressor.predict(x).reshape(len(x), -1)
    assert_close(network(x), expected.astype(dtype), dtype)


def test_sklearn_errors():
    neural_network = pytest.importorskip("sklearn.neural_network",
                                         reason="scikit-learn is not installed")
    with pytest.raises(ValueError, match="not fitted yet"):
        Network.from_sklearn(neural_network.MLPClassifier())
    x, y = sklearn_data("regression", np.float64)
    poisson = fit_quietly(neural_network.MLPRegressor(loss="poisson", max_iter=5), x, y ** 2)
    with pytest.raises(ValueError, match="unsupported scikit-learn activation 'exp'"):
        Network.from_sklearn(poisson)
    linear_model = pytest.importorskip("sklearn.linear_model")
    with pytest.raises(TypeError, match="MLPClassifier, MLPRegressor or a Pipeline ending with "
                                        "one, got LinearRegression"):
        Network.from_sklearn(linear_model.LinearRegression())


# --------------------------------------------------------------------------------------------
# Pipelines: scalers folded into the first layer
# --------------------------------------------------------------------------------------------


def scalers(preprocessing):
    """Every supported scaler, with each of its options."""
    return {
        "standard": lambda: preprocessing.StandardScaler(),
        "standard-no-mean": lambda: preprocessing.StandardScaler(with_mean=False),
        "standard-no-std": lambda: preprocessing.StandardScaler(with_std=False),
        "minmax": lambda: preprocessing.MinMaxScaler(feature_range=(-1, 2)),
        "maxabs": lambda: preprocessing.MaxAbsScaler(),
        "robust": lambda: preprocessing.RobustScaler(quantile_range=(10, 90)),
        "robust-no-centering": lambda: preprocessing.RobustScaler(with_centering=False),
        "robust-no-scaling": lambda: preprocessing.RobustScaler(with_scaling=False),
    }


def offset_data(kind, dtype):
    """sklearn_data with features of very different offsets and scales, and one constant
    feature (zero variance: scikit-learn's scalers divide it by 1)."""
    x, y = sklearn_data(kind, dtype)
    x = x * np.array([1, 10, 0.1, 3, 1], dtype) + np.array([5, -3, 0.5, 0, 2], dtype)
    x[:, 4] = 2
    return x, y


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scaler", ["standard", "standard-no-mean", "standard-no-std", "minmax",
                                    "maxabs", "robust", "robust-no-centering",
                                    "robust-no-scaling"])
@pytest.mark.parametrize("kind", ["multiclass", "regression"])
def test_sklearn_pipeline_with_each_scaler(kind, scaler, dtype):
    neural_network = pytest.importorskip("sklearn.neural_network",
                                         reason="scikit-learn is not installed")
    from sklearn import preprocessing
    from sklearn.pipeline import make_pipeline
    x, y = offset_data(kind, dtype)
    estimator = (neural_network.MLPRegressor if kind == "regression" else
                 neural_network.MLPClassifier)(hidden_layer_sizes=(7,), max_iter=80,
                                               random_state=0)
    pipeline = fit_quietly(make_pipeline(scalers(preprocessing)[scaler](), estimator), x, y)
    network = Network.from_sklearn(pipeline)
    assert network.sizes[:2] == (5, 7) and network.dtype == dtype
    predict = pipeline.predict if kind == "regression" else pipeline.predict_proba
    assert_close(network(x), predict(x).reshape(len(x), -1).astype(dtype), dtype)
    # The MLP alone, without its scaler, is another model: the scaler matters here.
    assert not np.allclose(Network.from_sklearn(pipeline[-1])(x), network(x), atol=1e-3)


def test_sklearn_pipeline_of_several_scalers_and_passthrough():
    neural_network = pytest.importorskip("sklearn.neural_network",
                                         reason="scikit-learn is not installed")
    from sklearn import preprocessing
    from sklearn.pipeline import Pipeline
    x, y = offset_data("multiclass", np.float64)
    pipeline = fit_quietly(Pipeline([
        ("robust", preprocessing.RobustScaler()), ("nothing", "passthrough"),
        ("minmax", preprocessing.MinMaxScaler()), ("none", None),
        ("standard", preprocessing.StandardScaler()),
        ("mlp", neural_network.MLPClassifier(hidden_layer_sizes=(6, 5), activation="tanh",
                                             max_iter=80, random_state=0)),
    ]), x, y)
    network = Network.from_sklearn(pipeline)
    assert network.sizes == (5, 6, 5, 4)
    assert_close(network(x), pipeline.predict_proba(x), np.float64)


def test_sklearn_pipeline_errors():
    neural_network = pytest.importorskip("sklearn.neural_network",
                                         reason="scikit-learn is not installed")
    from sklearn import decomposition, linear_model, preprocessing
    from sklearn.pipeline import make_pipeline
    x, y = offset_data("multiclass", np.float64)
    mlp = neural_network.MLPClassifier(hidden_layer_sizes=(4,), max_iter=5)
    cases = [
        (make_pipeline(decomposition.PCA(3), mlp), ValueError,
         r"Pipeline step 'pca' is a PCA; only StandardScaler, MinMaxScaler, MaxAbsScaler, "
         r"RobustScaler and 'passthrough' can come before the MLP"),
        (make_pipeline(preprocessing.MinMaxScaler(clip=True), mlp), ValueError,
         r"Pipeline step 'minmaxscaler' \(MinMaxScaler\) has clip=True"),
        (make_pipeline(preprocessing.StandardScaler(), linear_model.LogisticRegression()),
         TypeError, "a Pipeline ending with a fitted MLPClassifier or MLPRegressor, got one "
                    "ending with LogisticRegression"),
    ]
    for pipeline, error, message in cases:
        fit_quietly(pipeline, x, y)
        with pytest.raises(error, match=message):
            Network.from_sklearn(pipeline)
    with pytest.raises(ValueError, match=r"\(StandardScaler\) is not fitted yet"):
        Network.from_sklearn(make_pipeline(preprocessing.StandardScaler(), mlp))
