//! A topic's table as the broker keeps it.

use std::collections::BTreeMap;

use evebus::Change;

#[derive(Debug, Clone, PartialEq, Eq)]
struct Item {
    value: Vec<u8>,
    /// Held over from before the publisher's current connection and not
    /// published again since; dropped when the publisher says it is
    /// synchronized.
    retained: bool,
}

/// The items of one topic, owned by its publisher.
#[derive(Debug, Clone, Default)]
pub(crate) struct Table {
    items: BTreeMap<String, Item>,
}

/// The table holds its maximum number of items.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TableFull;

impl Table {
    /// A table loaded from disk: every item is retained until its
    /// publisher confirms it.
    pub(crate) fn retained(items: BTreeMap<String, Vec<u8>>) -> Table {
        Table {
            items: items
                .into_iter()
                .map(|(k, value)| {
                    (
                        k,
                        Item {
                            value,
                            retained: true,
                        },
                    )
                })
                .collect(),
        }
    }

    /// Sets an item; returns the change subscribers must see, if any.
    pub(crate) fn publish(
        &mut self,
        key: &str,
        value: Vec<u8>,
        max_items: usize,
    ) -> Result<Option<Change>, TableFull> {
        if !self.items.contains_key(key) && self.items.len() >= max_items {
            return Err(TableFull);
        }
        match self.items.get_mut(key) {
            Some(item) => {
                item.retained = false;
                if item.value == value {
                    return Ok(None);
                }
                item.value = value;
                Ok(Some(Change::Modified))
            }
            None => {
                self.items.insert(
                    key.to_owned(),
                    Item {
                        value,
                        retained: false,
                    },
                );
                Ok(Some(Change::Created))
            }
        }
    }

    /// Removes an item; whether it was there.
    pub(crate) fn delete(&mut self, key: &str) -> bool {
        self.items.remove(key).is_some()
    }

    /// The publisher (re)connected: every item goes on probation.
    pub(crate) fn retain_all(&mut self) {
        for item in self.items.values_mut() {
            item.retained = true;
        }
    }

    /// The publisher is synchronized: removes and returns the keys it did
    /// not publish again.
    pub(crate) fn drop_retained(&mut self) -> Vec<String> {
        let gone: Vec<String> = self
            .items
            .iter()
            .filter(|(_, item)| item.retained)
            .map(|(k, _)| k.clone())
            .collect();
        for key in &gone {
            self.items.remove(key);
        }
        gone
    }

    pub(crate) fn items(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.items
            .iter()
            .map(|(k, item)| (k.as_str(), item.value.as_slice()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retained_items_survive_until_synchronized_unless_republished() {
        let mut table = Table::default();
        assert_eq!(table.publish("a", vec![1], 10), Ok(Some(Change::Created)));
        assert_eq!(table.publish("b", vec![1], 10), Ok(Some(Change::Created)));
        table.retain_all();
        assert_eq!(table.publish("a", vec![1], 10), Ok(None), "same value");
        assert_eq!(table.items().count(), 2);
        assert_eq!(table.drop_retained(), ["b"]);
        assert_eq!(table.drop_retained(), Vec::<String>::new());
        assert_eq!(table.items().collect::<Vec<_>>(), [("a", &[1][..])]);
    }

    #[test]
    fn item_limit_applies_to_new_keys_only() {
        let mut table = Table::default();
        table.publish("a", vec![1], 1).unwrap();
        assert_eq!(table.publish("b", vec![1], 1), Err(TableFull));
        assert_eq!(table.publish("a", vec![2], 1), Ok(Some(Change::Modified)));
        assert!(table.delete("a"));
        assert!(!table.delete("a"));
    }
}
