//! A [`Store`] in memory, for tests and `--data-dir`-less experiments.

use crate::{next_record, NewRecord, Record, RecordSummary, Store, StoreError};
use std::sync::Mutex;

#[derive(Debug, Default)]
pub struct MemoryStore {
    records: Mutex<Vec<Record>>,
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Record>> {
        self.records
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Store for MemoryStore {
    fn append(&self, new: NewRecord) -> Result<Record, StoreError> {
        let mut records = self.lock();
        let record = next_record(records.last().map_or(0, |r| r.version), new)?;
        records.push(record.clone());
        Ok(record)
    }

    fn latest(&self) -> Result<Option<Record>, StoreError> {
        Ok(self.lock().last().cloned())
    }

    fn get(&self, version: u64) -> Result<Option<Record>, StoreError> {
        Ok(self.lock().iter().find(|r| r.version == version).cloned())
    }

    fn history(&self) -> Result<Vec<RecordSummary>, StoreError> {
        Ok(self.lock().iter().map(RecordSummary::from).collect())
    }
}
