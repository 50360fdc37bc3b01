import re,collections,sys
comm_filter=sys.argv[1]; needle=sys.argv[2]
data=open('/tmp/rt/all.script').read().split('\n\n')
cnt=collections.Counter(); hit=0
for s in data:
    lines=s.strip().split('\n')
    if len(lines)<2 or not re.match(r'\s*'+comm_filter, lines[0]): continue
    syms=[]
    for l in lines[1:]:
        m=re.match(r'\s*[0-9a-f]+ (.*) \((.*)\)$', l.strip())
        if m: syms.append(re.sub(r'\+0x[0-9a-f]+$','',m.group(1)))
    if not any(needle in f for f in syms): continue
    hit+=1
    # the frame right below needle (callee of needle) 
    idx=max(i for i,f in enumerate(syms) if needle in f)
    callee = syms[idx-1] if idx>0 else 'self'
    cnt[callee[:150]]+=1
print('hit',hit)
for k,v in cnt.most_common(15): print(v,k)
