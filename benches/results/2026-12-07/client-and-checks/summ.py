import json,gzip,sys,os,re
for d in sys.argv[1:]:
    f=os.path.join(d,'results.json')
    if not os.path.exists(f): f+='.gz'
    if not os.path.exists(f): print(d,'no results'); continue
    op=gzip.open if f.endswith('.gz') else open
    r=json.load(op(f))
    cpu_col={}
    if os.path.exists(os.path.join(d,'summary.md')):
        for line in open(os.path.join(d,'summary.md')):
            m=re.match(r'\| v4 da4 c2 \| (\d+) \|.*\| ([\d.]+) \(([\d.]+)x\) \| \d+ \| ([^|]+)\|',line)
            if m: cpu_col[int(m.group(1))]=(m.group(2),m.group(3))
    for c in r['configurations']:
        for p in c['points']:
            mods={}
            for pr in p['processes']:
                mods.setdefault(pr['module'],[0,0]); mods[pr['module']][0]+=pr['cpu_percent_mean']; mods[pr['module']][1]=max(mods[pr['module']][1],pr['rss_bytes_max'])
            ex=max(p['executed_tps'],1)
            us={m:v[0]/100*1e6/ex for m,v in mods.items()}
            cc=cpu_col.get(int(p['offered_tps']),('?','?'))
            print(f"{os.path.basename(d):10} {p['offered_tps']:>6.0f} exec {p['executed_tps']:>7.0f} e2e p50 {p['e2e']['p50_ms']:>7.1f} p99 {p['e2e']['p99_ms']:>7.1f} cpu/tx {cc[0]:>4} ({cc[1]}x) {p['verdict']['verdict']:5} | "+' '.join(f"{m}:{us[m]:.0f}µs/{mods[m][1]>>20}M" for m in sorted(us)))
