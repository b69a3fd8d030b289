//! A loaded ONNX model, its signature, and `predict`.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use ort::session::Session;
use ort::value::{Tensor, TensorElementType, TensorRef, ValueType};

use crate::{ModelError, Runtime};

/// What the model takes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InputKind {
    /// One string per row (e.g. a TF-IDF text pipeline).
    Text,
    /// A row of `width` floats (when the model fixes it).
    Features {
        /// Columns per row, if the model says.
        width: Option<usize>,
    },
}

/// A model's input and outputs, as Slipway uses them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Signature {
    /// The input's name.
    pub input: String,
    /// Its kind.
    pub kind: InputKind,
    /// The output holding one label per row.
    pub label: String,
    /// The output holding class probabilities per row, if any.
    pub probabilities: Option<String>,
    /// Class names in the order of the probability columns, from the model's metadata
    /// (`classes`, a JSON list), if it has them.
    pub classes: Option<Vec<String>>,
    /// The input and the outputs Slipway reads, with their element types and shapes: what an
    /// Open Inference Protocol client is told about the model.
    pub tensors: Tensors,
}

/// The tensors of a [`Signature`], described as the Open Inference Protocol describes them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tensors {
    /// The one input.
    pub input: TensorMeta,
    /// The label output.
    pub label: TensorMeta,
    /// The probabilities output, if any.
    pub probabilities: Option<TensorMeta>,
}

/// A tensor's name, element type (the protocol's names: `BYTES`, `FP32`, `INT64`, …) and shape
/// (`-1` for a dimension the model leaves open).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TensorMeta {
    /// Its name in the model.
    pub name: String,
    /// Its element type.
    pub datatype: &'static str,
    /// Its shape.
    pub shape: Vec<i64>,
}

impl TensorMeta {
    fn of(name: &str, value: &ValueType) -> TensorMeta {
        let (datatype, shape) = match value {
            ValueType::Tensor { ty, shape, .. } => {
                (datatype(*ty), shape.iter().map(|d| if *d < 0 { -1 } else { *d }).collect())
            }
            _ => ("BYTES", Vec::new()),
        };
        TensorMeta { name: name.to_string(), datatype, shape }
    }
}

/// The Open Inference Protocol's name of an ONNX element type.
fn datatype(ty: TensorElementType) -> &'static str {
    use TensorElementType as T;
    match ty {
        T::Bool => "BOOL",
        T::Uint8 => "UINT8",
        T::Uint16 => "UINT16",
        T::Uint32 => "UINT32",
        T::Uint64 => "UINT64",
        T::Int8 => "INT8",
        T::Int16 => "INT16",
        T::Int32 => "INT32",
        T::Int64 => "INT64",
        T::Float16 => "FP16",
        T::Float32 => "FP32",
        T::Float64 => "FP64",
        T::Bfloat16 => "BF16",
        T::String => "BYTES",
        _ => "BYTES",
    }
}

/// Rows to predict.
#[derive(Clone, Copy, Debug)]
pub enum Batch<'a> {
    /// One text per row.
    Texts(&'a [String]),
    /// One feature row per row; all rows the same width.
    Features(&'a [Vec<f32>]),
}

impl Batch<'_> {
    /// Rows in the batch.
    pub fn len(&self) -> usize {
        match self {
            Batch::Texts(t) => t.len(),
            Batch::Features(f) => f.len(),
        }
    }

    /// Whether the batch has no rows.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// What the model said about a batch.
#[derive(Clone, Debug, PartialEq)]
pub struct Prediction {
    /// One label per row, as a string (integer labels are printed).
    pub labels: Vec<String>,
    /// Per row, one probability per class, if the model has such an output.
    pub probabilities: Option<Vec<Vec<f32>>>,
}

/// An ONNX model ready to predict. Sessions are pooled so that callers on several threads do
/// not wait on one another; each session runs single-threaded, which gives the lowest
/// single-row latency.
pub struct Model {
    sessions: Vec<Mutex<Session>>,
    signature: Signature,
}

impl Model {
    /// Loads the model at `path` with `sessions` parallel sessions (at least one), created on
    /// as many threads: building a session is most of the load time of a large model.
    pub fn load(runtime: &Runtime, path: &Path, sessions: usize) -> Result<Model, ModelError> {
        if !path.is_file() {
            return Err(ModelError::ModelMissing { path: path.to_path_buf() });
        }
        let invalid = |detail: String| ModelError::ModelInvalid { path: path.to_path_buf(), detail };
        let build = || {
            Session::builder(&runtime.env)
                .and_then(|b| b.with_intra_threads(1).map_err(Into::into))
                .and_then(|mut b| b.commit_from_file(path))
                .map_err(|e| e.to_string())
        };
        let built: Vec<Result<Session, String>> = std::thread::scope(|scope| {
            let others: Vec<_> = (1..sessions.max(1)).map(|_| scope.spawn(build)).collect();
            let mut built = vec![build()];
            built.extend(
                others.into_iter().map(|h| h.join().unwrap_or_else(|_| Err("session creation panicked".into()))),
            );
            built
        });
        let pool = built.into_iter().map(|s| s.map(Mutex::new)).collect::<Result<Vec<_>, _>>().map_err(invalid)?;
        let signature = signature(&pool[0].lock().expect("new mutex")).map_err(invalid)?;
        Ok(Model { sessions: pool, signature })
    }

    /// How many predictions can run at once (one per session).
    pub fn sessions(&self) -> usize {
        self.sessions.len()
    }

    /// The model's signature.
    pub fn signature(&self) -> &Signature {
        &self.signature
    }

    /// Predicts labels (and probabilities) for `batch`.
    pub fn predict(&self, batch: Batch<'_>) -> Result<Prediction, ModelError> {
        if batch.is_empty() {
            return Ok(Prediction {
                labels: Vec::new(),
                probabilities: self.signature.probabilities.as_ref().map(|_| Vec::new()),
            });
        }
        let mut session = self.session();
        let sig = &self.signature;
        let bad = |detail: String| ModelError::Inference { detail };
        let outputs = match (batch, &sig.kind) {
            (Batch::Texts(texts), InputKind::Text) => {
                let tensor =
                    Tensor::from_string_array((vec![texts.len() as i64, 1], texts)).map_err(|e| bad(e.to_string()))?;
                session.run(ort::inputs![sig.input.as_str() => tensor]).map_err(|e| bad(e.to_string()))?
            }
            (Batch::Features(rows), InputKind::Features { width }) => {
                let cols = rows[0].len();
                if let Some(w) = width.filter(|w| *w != cols) {
                    return Err(ModelError::Input {
                        detail: format!("the model takes {w} features per row; the data has {cols}"),
                    });
                }
                if let Some(i) = rows.iter().position(|r| r.len() != cols) {
                    return Err(ModelError::Input {
                        detail: format!("row {i} has {} features, row 0 has {cols}", rows[i].len()),
                    });
                }
                let flat: Vec<f32> = rows.iter().flatten().copied().collect();
                let tensor =
                    TensorRef::from_array_view(([rows.len(), cols], &flat[..])).map_err(|e| bad(e.to_string()))?;
                session.run(ort::inputs![sig.input.as_str() => tensor]).map_err(|e| bad(e.to_string()))?
            }
            (Batch::Texts(_), InputKind::Features { .. }) => {
                return Err(ModelError::Input {
                    detail: format!("the model's input `{}` takes float features, not text", sig.input),
                });
            }
            (Batch::Features(_), InputKind::Text) => {
                return Err(ModelError::Input {
                    detail: format!("the model's input `{}` takes text, not float features", sig.input),
                });
            }
        };
        let label_value = &outputs[sig.label.as_str()];
        let labels = match label_value.try_extract_strings() {
            Ok((_, labels)) => labels,
            Err(_) => {
                let (_, ints) = label_value.try_extract_tensor::<i64>().map_err(|e| bad(e.to_string()))?;
                ints.iter().map(i64::to_string).collect()
            }
        };
        let probabilities = match &sig.probabilities {
            None => None,
            Some(name) => {
                let (shape, values) =
                    outputs[name.as_str()].try_extract_tensor::<f32>().map_err(|e| bad(e.to_string()))?;
                let cols = shape.last().copied().unwrap_or(1).max(1) as usize;
                Some(values.chunks(cols).map(<[f32]>::to_vec).collect())
            }
        };
        if labels.len() != batch.len() {
            return Err(bad(format!("the model returned {} labels for {} rows", labels.len(), batch.len())));
        }
        Ok(Prediction { labels, probabilities })
    }

    fn session(&self) -> MutexGuard<'_, Session> {
        // A free session if there is one; otherwise wait on the first.
        for s in &self.sessions {
            if let Ok(guard) = s.try_lock() {
                return guard;
            }
        }
        self.sessions[0].lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn signature(session: &Session) -> Result<Signature, String> {
    let [input] = session.inputs() else {
        return Err(format!("the model has {} inputs; Slipway serves models with exactly one", session.inputs().len()));
    };
    let kind = match input.dtype() {
        ValueType::Tensor { ty: TensorElementType::String, .. } => InputKind::Text,
        ValueType::Tensor { ty: TensorElementType::Float32, shape, .. } => {
            InputKind::Features { width: shape.last().copied().filter(|d| *d > 0).map(|d| d as usize) }
        }
        other => {
            return Err(format!(
                "its input `{}` is {other:?}; Slipway supports a string or a float32 tensor",
                input.name()
            ));
        }
    };
    let is_tensor_of =
        |v: &ValueType, tys: &[TensorElementType]| matches!(v, ValueType::Tensor { ty, .. } if tys.contains(ty));
    let label = session
        .outputs()
        .iter()
        .find(|o| is_tensor_of(o.dtype(), &[TensorElementType::String, TensorElementType::Int64]))
        .ok_or("it has no label output (a string or int64 tensor)")?;
    let probabilities = session.outputs().iter().find(|o| is_tensor_of(o.dtype(), &[TensorElementType::Float32]));
    let classes = session
        .metadata()
        .ok()
        .and_then(|m| m.custom("classes"))
        .and_then(|json| serde_json::from_str::<Vec<String>>(&json).ok());
    let tensors = Tensors {
        input: TensorMeta::of(input.name(), input.dtype()),
        label: TensorMeta::of(label.name(), label.dtype()),
        probabilities: probabilities.map(|o| TensorMeta::of(o.name(), o.dtype())),
    };
    Ok(Signature {
        input: input.name().to_string(),
        kind,
        label: label.name().to_string(),
        probabilities: probabilities.map(|o| o.name().to_string()),
        classes,
        tensors,
    })
}
