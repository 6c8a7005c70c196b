//! The console's HTML: one layout and one function per page, rendering what
//! [`super::source::Source`] returned. Every name from the cluster (topics, groups,
//! members, configs) is escaped. Pages whose `<main>` carries `data-refresh` are
//! reloaded in place by `console.js`.

use std::fmt::Write;

use super::source::{AgentRow, GroupRow, TopicRow};
use super::RequestPrices;

/// `s` safe inside HTML text and attribute values.
pub(super) fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const NAV: [(&str, &str); 4] = [
    ("/", "Throughput"),
    ("/agents", "Agents"),
    ("/topics", "Topics"),
    ("/groups", "Consumer groups"),
];

fn layout(title: &str, cluster_id: &str, path: &str, refresh: bool, body: &str) -> String {
    let mut nav = String::new();
    for (href, name) in NAV {
        let class = if href == path {
            " class=\"active\""
        } else {
            ""
        };
        let _ = write!(nav, "<a href=\"{href}\"{class}>{name}</a>");
    }
    let refresh = if refresh {
        " data-refresh=\"2000\""
    } else {
        ""
    };
    format!(
        "<!doctype html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>{title} · Shoal</title><link rel=\"icon\" href=\"data:,\">\
         <link rel=\"stylesheet\" href=\"/console.css\"></head>\
         <body><header><span class=\"brand\">Shoal</span><nav>{nav}</nav>\
         <span class=\"cluster\">cluster {cluster}</span></header>\
         <main{refresh}><h1>{title}</h1>\n{body}</main>\
         <script src=\"/console.js\"></script></body></html>\n",
        cluster = esc(cluster_id),
    )
}

/// The throughput plots; `console.js` fills the `figure.chart` elements from
/// `/api/throughput`.
pub(super) fn overview(cluster_id: &str, prices: Option<&RequestPrices>) -> String {
    let chart = |id: &str, title: &str, field: &str, unit: &str| {
        format!(
            "<figure class=\"chart\" id=\"{id}\" data-field=\"{field}\" data-unit=\"{unit}\">\
             <figcaption>{title} <span class=\"now\">…</span></figcaption>\
             <svg viewBox=\"0 0 600 160\" preserveAspectRatio=\"none\"></svg></figure>"
        )
    };
    let cost = match prices {
        Some(p) => format!(
            "<section id=\"cost\"><h2>Estimated object-store requests per month</h2>\
             <p><span class=\"dollars\">…</span> at {} (PUT ${}/1000, GET ${}/1000), \
             from this agent's last minute of requests. Storage and compute are not included; \
             <code>shoal cost</code> projects a whole bill.</p></section>",
            esc(&p.label),
            p.put_per_1000,
            p.get_per_1000
        ),
        None => String::new(),
    };
    let body = format!(
        "<p class=\"note\">This agent's traffic, sampled every second over the last 10 minutes.</p>\
         <div class=\"charts\">{}{}{}{}</div>{cost}",
        chart("chart-produce", "Produce", "produce_bytes_s", "bytes"),
        chart("chart-fetch", "Fetch", "fetch_bytes_s", "bytes"),
        chart("chart-puts", "Object-store PUTs", "puts_s", "req"),
        chart("chart-gets", "Object-store GETs", "gets_s", "req"),
    );
    layout("Throughput", cluster_id, "/", false, &body)
}

pub(super) fn agents(cluster_id: &str, agents: &[AgentRow]) -> String {
    let mut rows = String::new();
    for a in agents {
        let uptime = a.uptime_s.map(duration).unwrap_or_else(|| "–".into());
        let version = a.version.as_deref().unwrap_or("–");
        let me = if a.this_agent { " (this agent)" } else { "" };
        let _ = write!(
            rows,
            "<tr><td>{}{me}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{uptime}</td><td>{}</td></tr>",
            a.node_id,
            esc(&a.address),
            if a.zone.is_empty() { "–".into() } else { esc(&a.zone) },
            esc(&a.agent_group),
            esc(&a.roles.join(", ")),
            esc(version),
        );
    }
    let body = format!(
        "<table id=\"agents\"><thead><tr><th>node id</th><th>address</th><th>zone</th>\
         <th>agent group</th><th>roles</th><th>uptime</th><th>version</th></tr></thead>\
         <tbody>{rows}</tbody></table>"
    );
    layout("Agents", cluster_id, "/agents", true, &body)
}

pub(super) fn topics(cluster_id: &str, topics: &[TopicRow]) -> String {
    let mut body = String::new();
    if topics.is_empty() {
        body.push_str("<p>No topics yet.</p>");
    }
    for t in topics {
        let records: i64 = t
            .partitions
            .iter()
            .map(|p| p.high_watermark - p.log_start)
            .sum();
        let bytes: Option<u64> = t.partitions.iter().map(|p| p.bytes).sum();
        let configs = if t.configs.is_empty() {
            "defaults".to_string()
        } else {
            t.configs
                .iter()
                .map(|(k, v)| format!("<code>{}={}</code>", esc(k), esc(v)))
                .collect::<Vec<_>>()
                .join(" ")
        };
        let _ = write!(
            body,
            "<section class=\"topic\" data-topic=\"{name}\"><h2>{name}</h2>\
             <p>{} partition(s), {records} record(s), {}; configs: {configs}</p>\
             <table><thead><tr><th>partition</th><th>log start</th><th>high watermark</th>\
             <th>bytes</th></tr></thead><tbody>",
            t.partitions.len(),
            bytes.map(size).unwrap_or_else(|| "size not summed".into()),
            name = esc(&t.name),
        );
        for p in &t.partitions {
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td class=\"hwm\">{}</td><td>{}</td></tr>",
                p.partition,
                p.log_start,
                p.high_watermark,
                p.bytes.map(size).unwrap_or_else(|| "–".into()),
            );
        }
        body.push_str("</tbody></table></section>");
    }
    layout("Topics", cluster_id, "/topics", true, &body)
}

pub(super) fn groups(cluster_id: &str, groups: &[GroupRow]) -> String {
    let mut body = String::new();
    if groups.is_empty() {
        body.push_str("<p>No consumer groups yet.</p>");
    }
    for g in groups {
        let _ = write!(
            body,
            "<section class=\"group\" data-group=\"{name}\"><h2>{name}</h2>\
             <p>state <b>{}</b>, {} member(s), total lag <b class=\"total-lag\">{}</b> record(s){}</p>",
            esc(&g.state),
            g.members.len(),
            g.total_lag,
            if g.coordinated_here {
                ""
            } else {
                " (coordinated by another agent: open its console for members)"
            },
            name = esc(&g.group),
        );
        if !g.members.is_empty() {
            body.push_str(
                "<table class=\"members\"><thead><tr><th>member</th><th>client id</th>\
                 <th>host</th><th>assignment</th></tr></thead><tbody>",
            );
            for m in &g.members {
                let assignment = m
                    .assignment
                    .iter()
                    .map(|(t, ps)| {
                        let ps: Vec<String> = ps.iter().map(i32::to_string).collect();
                        format!("{} [{}]", esc(t), ps.join(", "))
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                let _ = write!(
                    body,
                    "<tr><td>{}</td><td>{}</td><td>{}</td><td>{assignment}</td></tr>",
                    esc(&m.member_id),
                    esc(&m.client_id),
                    esc(&m.client_host),
                );
            }
            body.push_str("</tbody></table>");
        }
        body.push_str(
            "<table class=\"lag\"><thead><tr><th>topic</th><th>partition</th><th>committed</th>\
             <th>end</th><th>lag</th><th>member</th></tr></thead><tbody>",
        );
        for p in &g.partitions {
            let show = |v: i64| {
                if v < 0 {
                    "–".to_string()
                } else {
                    v.to_string()
                }
            };
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"lag-value\">{}</td><td>{}</td></tr>",
                esc(&p.topic),
                p.partition,
                show(p.committed),
                show(p.end),
                p.lag,
                esc(p.member.as_deref().unwrap_or("–")),
            );
        }
        body.push_str("</tbody></table></section>");
    }
    layout("Consumer groups", cluster_id, "/groups", true, &body)
}

/// `3725` → `1h 2m 5s`.
fn duration(secs: u64) -> String {
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match (h, m) {
        (0, 0) => format!("{s}s"),
        (0, _) => format!("{m}m {s}s"),
        _ => format!("{h}h {m}m {s}s"),
    }
}

/// Bytes in the largest unit that keeps a number ≥ 1 (powers of 1000, as the plots).
fn size(bytes: u64) -> String {
    let mut v = bytes as f64;
    for unit in ["B", "kB", "MB", "GB"] {
        if v < 1000.0 {
            return if unit == "B" {
                format!("{bytes} B")
            } else {
                format!("{v:.1} {unit}")
            };
        }
        v /= 1000.0;
    }
    format!("{v:.1} TB")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::console::source::{LagRow, MemberRow};

    #[test]
    fn names_from_the_cluster_are_escaped() {
        let g = GroupRow {
            group: "<script>x</script>".into(),
            state: "Stable".into(),
            coordinated_here: true,
            members: vec![MemberRow {
                member_id: "m\"1".into(),
                client_id: "c&".into(),
                client_host: "/127.0.0.1".into(),
                assignment: [("t<".to_string(), vec![0, 1])].into(),
            }],
            partitions: vec![LagRow {
                topic: "t<".into(),
                partition: 0,
                committed: 3,
                end: 10,
                lag: 7,
                member: None,
            }],
            total_lag: 7,
        };
        let html = groups("id", &[g]);
        assert!(!html.contains("<script>x"), "{html}");
        assert!(html.contains("&lt;script&gt;x&lt;/script&gt;"));
        assert!(html.contains("m&quot;1") && html.contains("c&amp;"));
        assert!(html.contains("t&lt; [0, 1]"));
        assert!(html.contains("<td class=\"lag-value\">7</td>"));
    }

    #[test]
    fn sizes_and_durations_read_well() {
        assert_eq!(size(999), "999 B");
        assert_eq!(size(1_500), "1.5 kB");
        assert_eq!(size(2_000_000), "2.0 MB");
        assert_eq!(duration(5), "5s");
        assert_eq!(duration(125), "2m 5s");
        assert_eq!(duration(3725), "1h 2m 5s");
    }
}
