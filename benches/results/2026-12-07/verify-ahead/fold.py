import re,collections,sys
comm_filter=sys.argv[1]; needle=sys.argv[2] if len(sys.argv)>2 else None
data=open('/tmp/rt/all.script').read().split('\n\n')
cnt=collections.Counter(); tot=0; hit=0
for s in data:
    lines=s.strip().split('\n')
    if len(lines)<2: continue
    head=lines[0]
    if not re.match(r'\s*'+comm_filter, head): continue
    tot+=1
    syms=[]
    for l in lines[1:]:
        m=re.match(r'\s*[0-9a-f]+ (.*) \((.*)\)$', l.strip())
        if m: syms.append(m.group(1))
    if needle and not any(needle in f for f in syms): continue
    hit+=1
    lam=[]
    for f in syms:
        if ('lamina' in f or 'quinn' in f or 'redb' in f or 'rkyv' in f) and not f.startswith('<tokio'):
            n=re.sub(r'\+0x[0-9a-f]+$','',f)[:100]
            if not lam or lam[-1]!=n: lam.append(n)
    cnt[' <- '.join(lam[:int(sys.argv[3]) if len(sys.argv)>3 else 2]) or (syms[0][:80] if syms else '?')]+=1
print('total',tot,'hit',hit)
for k,v in cnt.most_common(int(sys.argv[4]) if len(sys.argv)>4 else 25): print(v,k)
