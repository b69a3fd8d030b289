//! Reading a labelled CSV: `text,label`, or numeric feature columns plus `label` (the names of
//! the label and text columns are settings: [`Columns`]).

use std::path::Path;

use model::Batch;
use serde::{Deserialize, Serialize};

/// The names of the columns with a meaning: the label, and a text model's input.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Columns {
    /// The true label of each row.
    pub label: String,
    /// A text model's input; a feature model reads every column but the label.
    pub text: String,
}

impl Default for Columns {
    fn default() -> Columns {
        Columns { label: "label".into(), text: "text".into() }
    }
}

/// Why a dataset could not be read.
#[derive(Debug, thiserror::Error)]
pub enum DataError {
    /// The file could not be opened or parsed.
    #[error("cannot read {path}: {detail}")]
    Unreadable {
        /// The file.
        path: String,
        /// Why.
        detail: String,
    },
    /// A required column is absent.
    #[error("{path} has no `{column}` column (columns: {found})")]
    MissingColumn {
        /// The file.
        path: String,
        /// The column.
        column: String,
        /// The header that was found.
        found: String,
    },
    /// No rows.
    #[error("{path} has no rows")]
    Empty {
        /// The file.
        path: String,
    },
    /// A feature cell is not a number.
    #[error("{path} line {line}: column `{column}` holds `{value}`, not a number")]
    NotANumber {
        /// The file.
        path: String,
        /// The 1-based line in the file.
        line: u64,
        /// The column.
        column: String,
        /// The cell.
        value: String,
    },
}

/// The inputs of a labelled dataset.
#[derive(Clone, Debug, PartialEq)]
pub enum Inputs {
    /// One text per row.
    Texts(Vec<String>),
    /// One feature row per row, with the column names.
    Features {
        /// Column names, in file order.
        columns: Vec<String>,
        /// The rows.
        rows: Vec<Vec<f32>>,
    },
}

/// A labelled dataset.
#[derive(Clone, Debug, PartialEq)]
pub struct Dataset {
    /// What the model reads.
    pub inputs: Inputs,
    /// The true label of each row, as a string.
    pub labels: Vec<String>,
}

/// A CSV file read whole, before it is known which of its columns a model reads: validation
/// reads it while ONNX Runtime loads the model. A record that cannot be read ends the records;
/// [`Table::dataset`] reports it where reading row by row would have.
pub struct Table {
    name: String,
    header: Vec<String>,
    records: Vec<csv::StringRecord>,
    broken: Option<String>,
}

impl Table {
    /// Reads the header and every record of `path`.
    pub fn read(path: &Path) -> Result<Table, DataError> {
        let name = path.display().to_string();
        let unreadable = |detail: String| DataError::Unreadable { path: name.clone(), detail };
        let mut reader = csv::ReaderBuilder::new().from_path(path).map_err(|e| unreadable(e.to_string()))?;
        let header: Vec<String> =
            reader.headers().map_err(|e| unreadable(e.to_string()))?.iter().map(str::to_string).collect();
        let (mut records, mut broken) = (Vec::new(), None);
        for record in reader.records() {
            match record {
                Ok(record) => records.push(record),
                Err(e) => {
                    broken = Some(e.to_string());
                    break;
                }
            }
        }
        Ok(Table { name, header, records, broken })
    }

    /// The rows for a model taking `kind`: the text and label columns for a text model; numeric
    /// feature columns and the label column for a features model.
    pub fn dataset(self, kind: &model::InputKind, columns: &Columns) -> Result<Dataset, DataError> {
        let Table { name, header, records, broken } = self;
        let unreadable = |detail: String| DataError::Unreadable { path: name.clone(), detail };
        let missing = |column: &str| DataError::MissingColumn {
            path: name.clone(),
            column: column.to_string(),
            found: header.join(","),
        };
        let find = |c: &str| header.iter().position(|h| h == c).ok_or_else(|| missing(c));
        let label_col = find(&columns.label)?;
        let text_col = match kind {
            model::InputKind::Text => Some(find(&columns.text)?),
            model::InputKind::Features { .. } => None,
        };
        let feature_cols: Vec<usize> = (0..header.len()).filter(|i| *i != label_col).collect();
        if text_col.is_none() && feature_cols.is_empty() {
            return Err(missing("a feature"));
        }
        let mut labels = Vec::new();
        let mut texts = Vec::new();
        let mut rows = Vec::new();
        for record in &records {
            let line = record.position().map_or(0, |p| p.line());
            labels.push(record.get(label_col).unwrap_or_default().to_string());
            match text_col {
                Some(t) => texts.push(record.get(t).unwrap_or_default().to_string()),
                None => rows.push(parse_row(record, &feature_cols, &header, &name, line)?),
            }
        }
        if let Some(detail) = broken {
            return Err(unreadable(detail));
        }
        if labels.is_empty() {
            return Err(DataError::Empty { path: name });
        }
        let inputs = match text_col {
            Some(_) => Inputs::Texts(texts),
            None => Inputs::Features { columns: feature_cols.iter().map(|i| header[*i].clone()).collect(), rows },
        };
        Ok(Dataset { inputs, labels })
    }
}

impl Dataset {
    /// Reads `path` for a model taking `kind` (see [`Table::dataset`]).
    pub fn read(path: &Path, kind: &model::InputKind, columns: &Columns) -> Result<Dataset, DataError> {
        Table::read(path)?.dataset(kind, columns)
    }

    /// Rows in the dataset.
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    /// Whether it has no rows (never true for a dataset that was read).
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    /// Rows `range` as a batch for the model.
    pub fn batch(&self, range: std::ops::Range<usize>) -> Batch<'_> {
        match &self.inputs {
            Inputs::Texts(t) => Batch::Texts(&t[range]),
            Inputs::Features { rows, .. } => Batch::Features(&rows[range]),
        }
    }
}

fn parse_row(
    record: &csv::StringRecord,
    cols: &[usize],
    header: &[String],
    path: &str,
    line: u64,
) -> Result<Vec<f32>, DataError> {
    cols.iter()
        .map(|&c| {
            let cell = record.get(c).unwrap_or_default();
            cell.trim().parse::<f32>().map_err(|_| DataError::NotANumber {
                path: path.to_string(),
                line,
                column: header[c].clone(),
                value: cell.to_string(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_as(text: &str, kind: model::InputKind) -> Result<Dataset, DataError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.csv");
        std::fs::write(&path, text).unwrap();
        Dataset::read(&path, &kind, &Columns::default())
    }

    fn read(text: &str) -> Result<Dataset, DataError> {
        read_as(text, model::InputKind::Text)
    }

    fn read_features(text: &str) -> Result<Dataset, DataError> {
        read_as(text, model::InputKind::Features { width: None })
    }

    #[test]
    fn text_datasets() {
        let d = read("text,label\n\"a, quoted\",fresh\nplain,rotten\n").unwrap();
        assert_eq!(d.inputs, Inputs::Texts(vec!["a, quoted".into(), "plain".into()]));
        assert_eq!(d.labels, ["fresh", "rotten"]);
    }

    #[test]
    fn feature_datasets() {
        let d = read_features("f0,f1,label\n1,2.5,a\n-1,0,b\n").unwrap();
        assert_eq!(
            d.inputs,
            Inputs::Features { columns: vec!["f0".into(), "f1".into()], rows: vec![vec![1.0, 2.5], vec![-1.0, 0.0]] }
        );
    }

    #[test]
    fn the_label_and_text_columns_are_named_by_the_settings() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("d.csv");
        std::fs::write(&path, "review,label,sentiment\ngood,x,pos\nbad,y,neg\n").unwrap();
        let columns = Columns { label: "sentiment".into(), text: "review".into() };
        let d = Dataset::read(&path, &model::InputKind::Text, &columns).unwrap();
        assert_eq!(d.inputs, Inputs::Texts(vec!["good".into(), "bad".into()]));
        assert_eq!(d.labels, ["pos", "neg"]);
        // A feature table with a renamed label: the column named `label` is a feature like any other.
        std::fs::write(&path, "f0,label,species\n1,2,a\n3,4,b\n").unwrap();
        let columns = Columns { label: "species".into(), ..Columns::default() };
        let d = Dataset::read(&path, &model::InputKind::Features { width: None }, &columns).unwrap();
        assert_eq!(d.labels, ["a", "b"]);
        assert_eq!(
            d.inputs,
            Inputs::Features { columns: vec!["f0".into(), "label".into()], rows: vec![vec![1.0, 2.0], vec![3.0, 4.0]] }
        );
        let e = Dataset::read(&path, &model::InputKind::Text, &Columns { label: "y".into(), ..Columns::default() });
        assert!(e.unwrap_err().to_string().contains("has no `y` column (columns: f0,label,species)"));
    }

    #[test]
    fn errors_name_the_problem() {
        let err = |t: &str| read(t).unwrap_err().to_string();
        assert!(err("text,y\nx,1\n").contains("has no `label` column (columns: text,y)"));
        assert!(err("label\na\n").contains("has no `text` column"));
        assert!(err("sentence,label\nx,1\n").contains("has no `text` column"));
        assert!(err("text,label\n").ends_with("has no rows"));
        let features = read_features("f0,label\n1,a\nx,b\n").unwrap_err().to_string();
        assert!(features.ends_with("line 3: column `f0` holds `x`, not a number"), "{features}");
        assert!(read_features("label\na\n").unwrap_err().to_string().contains("has no `a feature` column"));
    }
}
