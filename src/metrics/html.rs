//! The self-contained HTML status page served at `/`.
//!
//! The server renders the current [`StatusView`] into the page (so it reads
//! without JavaScript, and a `<noscript>` refresh keeps it current); a few
//! lines of inline JavaScript then fetch `status` every second and rebuild
//! the same elements with `textContent`, never `innerHTML`. Every string
//! taken from the view is escaped here: node ids, tags and endpoints are user
//! input.

use std::fmt::Write as _;

use super::status::{NodeView, StatusView};

/// Escapes `s` for HTML text and double- or single-quoted attribute values.
pub fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
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

/// Formats seconds as a short human duration: `42s`, `3m 05s`, `2h 07m`,
/// `4d 03h`.
pub fn format_uptime(secs: u64) -> String {
    let (d, h, m, s) = (secs / 86_400, secs / 3_600 % 24, secs / 60 % 60, secs % 60);
    if d > 0 {
        format!("{d}d {h:02}h")
    } else if h > 0 {
        format!("{h}h {m:02}m")
    } else if m > 0 {
        format!("{m}m {s:02}s")
    } else {
        format!("{s}s")
    }
}

/// Width of a node's shard bar in percent of the shard count, in `0..=100`.
pub fn shard_bar_percent(owned: u32, shard_count: u32) -> f64 {
    if shard_count == 0 {
        return 0.0;
    }
    (f64::from(owned) * 100.0 / f64::from(shard_count)).clamp(0.0, 100.0)
}

/// CSS class for a gossip status: known statuses get their own colour.
fn gossip_class(status: &str) -> &'static str {
    match status.to_ascii_lowercase().as_str() {
        "alive" => "alive",
        "suspect" => "suspect",
        "dead" | "failed" => "dead",
        "left" | "leaving" => "left",
        _ => "unknown",
    }
}

fn or_dash(s: Option<&str>) -> &str {
    match s {
        Some(s) if !s.is_empty() => s,
        _ => "–",
    }
}

fn summary_item(out: &mut String, key: &str, value: &str) {
    let _ = write!(
        out,
        "<div><dt>{}</dt><dd>{}</dd></div>",
        escape_html(key),
        escape_html(value)
    );
}

fn render_summary(out: &mut String, v: &StatusView) {
    summary_item(out, "this node", &v.node_id);
    summary_item(out, "cluster id", or_dash(v.cluster_id.as_deref()));
    summary_item(out, "leader", or_dash(v.leader.as_deref()));
    summary_item(out, "role", or_dash(Some(&v.role)));
    summary_item(out, "state", or_dash(Some(&v.state)));
    summary_item(out, "epoch", &v.epoch.to_string());
    summary_item(out, "shards", &v.shard_count.to_string());
    summary_item(out, "uptime", &format_uptime(v.uptime_ms / 1000));
}

fn render_node(out: &mut String, v: &StatusView, n: &NodeView) {
    let is_leader = v.leader.as_deref() == Some(n.id.as_str());
    let pct = shard_bar_percent(n.shards, v.shard_count);
    let _ = write!(
        out,
        "<tr{}><td class=\"id\">{}{}</td><td>{}</td><td>{}</td>\
         <td><span class=\"badge {}\">{}</span></td>\
         <td><span class=\"badge {}\">{}</span></td>\
         <td>{}</td><td class=\"num\">{}</td>\
         <td class=\"shards\"><div class=\"bar\"><div class=\"fill\" style=\"width:{:.1}%\"></div></div>\
         <span class=\"num\">{} <span class=\"muted\">({:.0}%)</span></span></td><td class=\"eps\">",
        if is_leader { " class=\"leader\"" } else { "" },
        escape_html(&n.id),
        if is_leader { " <span class=\"star\" title=\"leader\">★</span>" } else { "" },
        escape_html(or_dash(Some(&n.role))),
        n.raft_role.as_str(),
        gossip_class(&n.gossip_status),
        escape_html(or_dash(Some(&n.gossip_status))),
        n.liveness.as_str(),
        n.liveness.as_str(),
        escape_html(or_dash(n.zone.as_deref())),
        n.weight,
        pct,
        n.shards,
        pct,
    );
    for (name, addr) in &n.endpoints {
        let _ = write!(
            out,
            "<div><span class=\"ep\">{}</span> {}</div>",
            escape_html(name),
            escape_html(addr)
        );
    }
    out.push_str("</td></tr>");
}

/// Renders the whole status page for `view`.
pub fn render_page(view: &StatusView) -> String {
    let mut out = String::with_capacity(8 * 1024 + view.nodes.len() * 512);
    let cluster = if view.cluster_name.is_empty() {
        "clusterfunk".to_owned()
    } else {
        view.cluster_name.clone()
    };
    let _ = write!(
        out,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width,initial-scale=1\">\
         <title>{} · {}</title>\
         <noscript><meta http-equiv=\"refresh\" content=\"2\"></noscript>\
         <style>{}</style></head><body>\
         <header><h1><span class=\"muted\">clusterfunk</span> <span id=\"cluster\">{}</span></h1>\
         <span id=\"health\" class=\"badge {}\">{}</span></header>\
         <dl id=\"summary\">",
        escape_html(&cluster),
        escape_html(&view.node_id),
        STYLE,
        escape_html(&cluster),
        if view.operational { "alive" } else { "dead" },
        if view.operational {
            "operational"
        } else {
            "not operational"
        },
    );
    render_summary(&mut out, view);
    out.push_str(
        "</dl><table><thead><tr><th>node</th><th>role</th><th>raft</th><th>gossip</th>\
         <th>liveness</th><th>zone</th><th>weight</th><th>shards owned</th><th>endpoints</th>\
         </tr></thead><tbody id=\"nodes\">",
    );
    for n in &view.nodes {
        render_node(&mut out, view, n);
    }
    let moving = view.shard_map.as_ref().map_or(0, |m| m.moving.len());
    let _ = write!(
        out,
        "</tbody></table><h2>shard map</h2>\
         <p id=\"maplegend\" class=\"muted\">{moving} shards moving</p>\
         <canvas id=\"map\" width=\"640\" height=\"0\"></canvas>\
         <p id=\"updated\" class=\"muted\">{} nodes · rendered by the server</p>\
         <script>{}</script></body></html>",
        view.nodes.len(),
        SCRIPT
    );
    out
}

const STYLE: &str = r#"
:root{--bg:#fff;--fg:#1b1f24;--mut:#6a737d;--line:#e1e4e8;--bar:#eef1f4;--fill:#3b82f6;
--ok:#1a7f37;--bad:#cf222e;--warn:#9a6700;--gray:#6e7781}
@media (prefers-color-scheme:dark){:root{--bg:#0d1117;--fg:#e6edf3;--mut:#8b949e;--line:#30363d;
--bar:#21262d;--fill:#58a6ff;--ok:#3fb950;--bad:#f85149;--warn:#d29922;--gray:#8b949e}}
*{box-sizing:border-box}
body{margin:0;padding:1.2rem 1.5rem;font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;
background:var(--bg);color:var(--fg)}
header{display:flex;align-items:center;gap:1rem;flex-wrap:wrap}
h1{font-size:1.3rem;margin:0}
.muted{color:var(--mut);font-weight:normal}
dl{display:flex;flex-wrap:wrap;gap:.4rem 1.6rem;margin:1rem 0}
dl div{min-width:6rem}dt{color:var(--mut);font-size:.8rem}dd{margin:0;font-weight:600;word-break:break-all}
table{border-collapse:collapse;width:100%}
th,td{text-align:left;padding:.35rem .6rem;border-bottom:1px solid var(--line);vertical-align:top}
th{color:var(--mut);font-weight:600;font-size:.8rem}
td.id{font-family:ui-monospace,monospace;word-break:break-all}
tr.leader td{background:color-mix(in srgb,var(--fill) 8%,transparent)}
.star{color:var(--warn)}
.num{font-variant-numeric:tabular-nums}
.badge{display:inline-block;padding:0 .5rem;border-radius:1rem;font-size:.8rem;color:#fff;background:var(--gray)}
.badge.alive{background:var(--ok)}.badge.dead{background:var(--bad)}
.badge.suspect{background:var(--warn)}.badge.left,.badge.unknown{background:var(--gray)}
td.shards{min-width:12rem}
.bar{display:inline-block;width:8rem;height:.7rem;background:var(--bar);border-radius:.35rem;
overflow:hidden;margin-right:.5rem;vertical-align:middle}
.fill{height:100%;background:var(--fill)}
td.eps{font-family:ui-monospace,monospace;font-size:.8rem;color:var(--mut)}
h2{font-size:1rem;margin:1.2rem 0 .3rem}
.sw{display:inline-block;width:.8rem;height:.8rem;margin:0 .3rem 0 .8rem;vertical-align:middle;border-radius:.15rem}
canvas{max-width:100%}
.ep{color:var(--fg)}
"#;

// Rebuilds the page from /status with DOM calls and textContent only.
const SCRIPT: &str = r#"
(function(){
"use strict";
function el(tag,cls,text){var e=document.createElement(tag);if(cls)e.className=cls;
if(text!==undefined&&text!==null)e.textContent=String(text);return e;}
function dash(s){return (s===undefined||s===null||s==="")?"\u2013":s;}
function up(t){var d=Math.floor(t/86400),h=Math.floor(t/3600)%24,m=Math.floor(t/60)%60,s=t%60;
function p(n){return (n<10?"0":"")+n;}
return d>0?d+"d "+p(h)+"h":h>0?h+"h "+p(m)+"m":m>0?m+"m "+p(s)+"s":s+"s";}
function gcls(s){s=String(s||"").toLowerCase();
return s==="alive"?"alive":s==="suspect"?"suspect":(s==="dead"||s==="failed")?"dead":
(s==="left"||s==="leaving")?"left":"unknown";}
var LIVE={alive:1,dead:1,unknown:1},RAFT={voter:1,learner:1,non_member:1};
function render(v){
var cluster=v.cluster_name||"clusterfunk";
document.getElementById("cluster").textContent=cluster;
document.title=cluster+" \u00b7 "+v.node_id;
var h=document.getElementById("health");
h.className="badge "+(v.operational?"alive":"dead");
h.textContent=v.operational?"operational":"not operational";
var dl=document.getElementById("summary");dl.replaceChildren();
[["this node",v.node_id],["cluster id",dash(v.cluster_id)],["leader",dash(v.leader)],
["role",dash(v.role)],["state",dash(v.state)],["epoch",v.epoch],["shards",v.shard_count],
["uptime",up(Math.floor((v.uptime_ms||0)/1000))]].forEach(function(kv){var d=el("div");
d.appendChild(el("dt",null,kv[0]));d.appendChild(el("dd",null,kv[1]));dl.appendChild(d);});
var tb=document.getElementById("nodes");tb.replaceChildren();
(v.nodes||[]).forEach(function(n){
var lead=v.leader!==null&&v.leader!==undefined&&v.leader===n.id;
var tr=el("tr",lead?"leader":null);
var id=el("td","id",n.id);if(lead){var st=el("span","star","\u2605");st.title="leader";
id.appendChild(document.createTextNode(" "));id.appendChild(st);}tr.appendChild(id);
tr.appendChild(el("td",null,dash(n.role)));
tr.appendChild(el("td",null,RAFT[n.raft_role]?n.raft_role:"non_member"));
var g=el("td");g.appendChild(el("span","badge "+gcls(n.gossip_status),dash(n.gossip_status)));tr.appendChild(g);
var lv=LIVE[n.liveness]?n.liveness:"unknown";
var l=el("td");l.appendChild(el("span","badge "+lv,lv));tr.appendChild(l);
tr.appendChild(el("td",null,dash(n.zone)));
tr.appendChild(el("td","num",n.weight));
var pct=v.shard_count>0?Math.min(100,Math.max(0,100*n.shards/v.shard_count)):0;
var sc=el("td","shards"),bar=el("div","bar"),fill=el("div","fill");
fill.style.width=pct.toFixed(1)+"%";bar.appendChild(fill);sc.appendChild(bar);
var cnt=el("span","num",n.shards+" ");cnt.appendChild(el("span","muted","("+pct.toFixed(0)+"%)"));
sc.appendChild(cnt);tr.appendChild(sc);
var eps=el("td","eps");Object.keys(n.endpoints||{}).sort().forEach(function(k){
var d=el("div");d.appendChild(el("span","ep",k));
d.appendChild(document.createTextNode(" "+n.endpoints[k]));eps.appendChild(d);});
tr.appendChild(eps);tb.appendChild(tr);});
drawMap(v.shard_map);
document.getElementById("updated").textContent=(v.nodes||[]).length+" nodes \u00b7 updated "+
new Date().toLocaleTimeString();}
// The shard map: one cell per shard, coloured by owner; shards a pending
// proposal moves are drawn dark, unassigned ones empty.
function hue(i,n){return "hsl("+Math.round(360*i/Math.max(n,1))+",65%,55%)";}
function drawMap(m){
var lg=document.getElementById("maplegend"),cv=document.getElementById("map");
lg.replaceChildren();if(!m||!m.owners){lg.textContent="no committed map yet";cv.height=0;return;}
var n=m.owners.length,cols=Math.ceil(Math.sqrt(n*2)),cell=Math.max(2,Math.floor(640/cols));
cv.width=cols*cell;cv.height=Math.ceil(n/cols)*cell;
var moving={};(m.moving||[]).forEach(function(s){moving[s]=1;});
var counts=m.nodes.map(function(){return 0;});
var ctx=cv.getContext("2d");ctx.clearRect(0,0,cv.width,cv.height);
for(var s=0;s<n;s++){var o=m.owners[s];if(o>0)counts[o-1]++;
ctx.fillStyle=moving[s]?"rgb(17,17,17)":o>0?hue(o-1,m.nodes.length):"transparent";
ctx.fillRect((s%cols)*cell,Math.floor(s/cols)*cell,cell-1,cell-1);}
m.nodes.forEach(function(id,i){var sw=el("span","sw");sw.style.background=hue(i,m.nodes.length);
lg.appendChild(sw);lg.appendChild(document.createTextNode(id+" ("+counts[i]+")"));});
var mv=el("span","sw");mv.style.background="rgb(17,17,17)";lg.appendChild(mv);
lg.appendChild(document.createTextNode("moving ("+(m.moving||[]).length+")"));}
function tick(){fetch("status",{cache:"no-store"}).then(function(r){
if(!r.ok)throw new Error("HTTP "+r.status);return r.json();}).then(render).catch(function(e){
document.getElementById("updated").textContent="cannot reach this node: "+e.message+
" \u00b7 retrying";var h=document.getElementById("health");h.className="badge unknown";
h.textContent="unreachable";});}
setInterval(tick,1000);
})();
"#;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::status::{Liveness, RaftRole};
    use std::collections::BTreeMap;

    #[test]
    fn escapes_all_special_characters() {
        assert_eq!(
            escape_html(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(escape_html("plain-id_1"), "plain-id_1");
    }

    #[test]
    fn uptime_and_bar_widths() {
        assert_eq!(format_uptime(42), "42s");
        assert_eq!(format_uptime(185), "3m 05s");
        assert_eq!(format_uptime(7_620), "2h 07m");
        assert_eq!(format_uptime(356_400), "4d 03h");
        assert_eq!(shard_bar_percent(4, 16), 25.0);
        assert_eq!(shard_bar_percent(3, 0), 0.0);
        assert_eq!(shard_bar_percent(20, 16), 100.0);
    }

    #[test]
    fn page_escapes_user_strings_and_draws_bars() {
        let evil = "<script>alert('x')</script>";
        let view = StatusView {
            node_id: evil.into(),
            cluster_name: "<b>c</b>".into(),
            leader: Some(evil.into()),
            shard_count: 8,
            nodes: vec![NodeView {
                id: evil.into(),
                gossip_status: "\"onmouseover=".into(),
                liveness: Liveness::Dead,
                raft_role: RaftRole::Voter,
                endpoints: BTreeMap::from([("<k>".into(), "<addr>".into())]),
                zone: Some("<z>".into()),
                shards: 2,
                ..NodeView::default()
            }],
            ..StatusView::default()
        };
        let page = render_page(&view);
        assert!(!page.contains(evil));
        assert!(!page.contains("<b>c</b>"));
        assert!(!page.contains("<k>") && !page.contains("<addr>") && !page.contains("<z>"));
        assert!(!page.contains("\"onmouseover="));
        assert!(page.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        assert!(page.contains("width:25.0%"));
        assert!(page.contains("class=\"leader\""));
        assert!(page.contains("badge dead"));
        // exactly one script element: ours
        assert_eq!(page.matches("<script").count(), 1);
        assert!(!page.contains("http://") && !page.contains("https://"));
    }
}
