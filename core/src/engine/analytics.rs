//! The engine's analytics calls: each gathers rows with one scan per record type and hands
//! them to the pure function of its analytics module (which never sees the engine).

use std::collections::{BTreeSet, HashMap};

use crate::analytics::apriori::{self, AprioriParams, Associations, Baskets, Recommendation};
use crate::analytics::cltv::{self, CltvParams, CltvRow};
use crate::analytics::forecast::{self, ForecastParams, SalesForecast};
use crate::analytics::funnel::{self, FunnelReport, StageChange, StagePath};
use crate::analytics::pipeline::{self, PipelineParams, PipelineReport};
use crate::analytics::rfm::{self, RfmParams, RfmRow};
use crate::analytics::service::{self, ServiceParams, ServiceStats};
use crate::analytics::visit_plan::{self, VisitCandidate, VisitInputs, VisitPlanParams};
use crate::analytics::{AnalyticsResult, OrderFact, order_items};
use crate::engine::Engine;
use crate::model::{Record, RecordId, RecordType, Value};

impl Engine {
    /// Live rows of a type, in creation order.
    fn rows_of(&self, record_type: &RecordType) -> AnalyticsResult<Vec<Record>> {
        let mut out = Vec::new();
        self.store()
            .scan_type(record_type, |r| {
                out.push(r);
                true
            })
            .map_err(crate::Error::from)?;
        Ok(out)
    }

    /// Every sold order as an [`OrderFact`] (see [`OrderFact::from_record`]).
    pub fn order_facts(&self) -> AnalyticsResult<Vec<OrderFact>> {
        let mut out = Vec::new();
        let mut failed = None;
        self.store()
            .scan_type(&RecordType::Order, |r| match OrderFact::from_record(&r) {
                Ok(fact) => {
                    out.extend(fact);
                    true
                }
                Err(e) => {
                    failed = Some(e);
                    false
                }
            })
            .map_err(crate::Error::from)?;
        match failed {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    /// RFM scores and segments of every customer who ordered ([`rfm::rfm`]).
    pub fn rfm(&self, params: &RfmParams) -> AnalyticsResult<Vec<RfmRow>> {
        rfm::rfm(&self.order_facts()?, params)
    }

    /// Customer lifetime values, highest first ([`cltv::lifetime_values`]).
    pub fn lifetime_values(&self, params: &CltvParams) -> AnalyticsResult<Vec<CltvRow>> {
        cltv::lifetime_values(&self.order_facts()?, params)
    }

    /// Pipeline value, forecast, win rate and cycle length under the current pipeline
    /// ([`pipeline::pipeline_report`]).
    pub fn pipeline_report(&self, params: &PipelineParams) -> AnalyticsResult<PipelineReport> {
        let deals = self.rows_of(&RecordType::Deal)?;
        pipeline::pipeline_report(&deals, self.schema().pipeline(), params)
    }

    /// The stage funnel from every live deal's stage history ([`funnel::funnel`]). This reads
    /// each deal's document, so it costs more than the other analytics.
    pub fn stage_funnel(&self) -> AnalyticsResult<FunnelReport> {
        let mut ids = Vec::new();
        self.store()
            .scan_type(&RecordType::Deal, |r| {
                ids.push(r.id);
                true
            })
            .map_err(crate::Error::from)?;
        let mut paths = Vec::with_capacity(ids.len());
        for deal in ids {
            let changes = self
                .field_history(deal, "stage")?
                .into_iter()
                .map(|c| StageChange {
                    at: c.at,
                    stage: c.value.as_ref().and_then(Value::as_str).map(str::to_string),
                })
                .collect();
            paths.push(StagePath { deal, changes });
        }
        Ok(funnel::funnel(&paths, self.schema().pipeline()))
    }

    /// Monthly revenue and its forecast ([`forecast::sales_forecast`]).
    pub fn sales_forecast(&self, params: &ForecastParams) -> AnalyticsResult<SalesForecast> {
        forecast::sales_forecast(&self.order_facts()?, params)
    }

    /// Product SKUs by product id, for naming order lines that link a product.
    fn product_skus(&self) -> AnalyticsResult<HashMap<RecordId, String>> {
        let mut skus = HashMap::new();
        self.store()
            .scan_type(&RecordType::Product, |r| {
                if let Some(sku) = r.text("sku") {
                    skus.insert(r.id, sku.to_string());
                }
                true
            })
            .map_err(crate::Error::from)?;
        Ok(skus)
    }

    /// Baskets of sold orders with their customers ([`order_items`]).
    fn baskets_with_customers(&self) -> AnalyticsResult<Vec<(Option<RecordId>, Vec<String>)>> {
        let skus = self.product_skus()?;
        let mut out = Vec::new();
        self.store()
            .scan_type(&RecordType::Order, |r| {
                if let Some(items) = order_items(&r, &skus) {
                    out.push((r.get("customer").and_then(Value::as_link), items));
                }
                true
            })
            .map_err(crate::Error::from)?;
        Ok(out)
    }

    /// One basket per sold order, items named by SKU ([`order_items`]).
    pub fn order_baskets(&self) -> AnalyticsResult<Baskets> {
        Ok(self
            .baskets_with_customers()?
            .into_iter()
            .map(|(_, items)| items)
            .collect())
    }

    /// Frequent itemsets and association rules over the order baskets
    /// ([`apriori::associations`]).
    pub fn product_associations(&self, params: &AprioriParams) -> AnalyticsResult<Associations> {
        apriori::associations(&self.order_baskets()?, params)
    }

    /// Items to suggest to a customer from the association rules over every order and what
    /// the customer already bought ([`apriori::recommend`]).
    pub fn recommend_products(
        &self,
        customer: RecordId,
        params: &AprioriParams,
        limit: usize,
    ) -> AnalyticsResult<Vec<Recommendation>> {
        let rows = self.baskets_with_customers()?;
        let mut bought = BTreeSet::new();
        for (c, items) in &rows {
            if *c == Some(customer) {
                bought.extend(items.iter().cloned());
            }
        }
        let baskets: Baskets = rows.into_iter().map(|(_, items)| items).collect();
        let associations = apriori::associations(&baskets, params)?;
        let bought: Vec<String> = bought.into_iter().collect();
        Ok(apriori::recommend(&associations, &bought, limit))
    }

    /// Customers to visit next, with the reasons ([`visit_plan::visit_plan`]); RFM is scored
    /// as of the same day over `params.rfm_window_days`.
    pub fn visit_plan(&self, params: &VisitPlanParams) -> AnalyticsResult<Vec<VisitCandidate>> {
        let mut customers = self.rows_of(&RecordType::Company)?;
        customers.extend(self.rows_of(&RecordType::Contact)?);
        let deals = self.rows_of(&RecordType::Deal)?;
        let activities = self.rows_of(&RecordType::Activity)?;
        let cases = self.rows_of(&RecordType::Case)?;
        let rfm_params = RfmParams {
            as_of: params.as_of,
            window_days: params.rfm_window_days,
            rates: params.rates.clone(),
        };
        let rfm = rfm::rfm(&self.order_facts()?, &rfm_params)?;
        let schema = self.schema();
        let inputs = VisitInputs {
            customers: &customers,
            deals: &deals,
            activities: &activities,
            cases: &cases,
            rfm: &rfm,
            pipeline: schema.pipeline(),
        };
        visit_plan::visit_plan(inputs, params)
    }

    /// Case statistics ([`service::service_stats`]).
    pub fn service_stats(&self, params: &ServiceParams) -> AnalyticsResult<ServiceStats> {
        service::service_stats(&self.rows_of(&RecordType::Case)?, params)
    }
}
