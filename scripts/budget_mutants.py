#!/usr/bin/env python3
"""Comparison mutants of the budget band and partner packing, run against the budget unit tests.

  python3 scripts/budget_mutants.py            # ~3 min; prints survivors

Each `<`, `<=`, `>`, `>=`, `===`, `!==` in src/service/budget/{band,partners}.ts is flipped, and each
integer compared against is shifted by +-1, one at a time, in a copy of the repository (a temp
dir); a mutant survives when every budget unit test still passes. The survivors known to be
equivalent (no input tells them apart):
- partners.ts `gpuPerReplica <= 0` → `< 0` / `<= -1`: a 0-GPU pool has delta 0, which the
  strict sign test already excludes;
- `headroom <= 0` → `< 0` / `<= -1` and `shortfall > 0` → `>= 0` / `> 1` / `> -1`: at those
  values K equals the current count and the `k > current` / `k < current` test answers null;
- `_stillOnStartingSide`: `netDelta > 0` → `>= 0` / `> -1` and `netDelta < 0` → `<= 0` / `< 1`
  (packing is never called with netDelta 0), `full > max` → `>=` and `full < min - T` → `<=`
  (rule 1 takes a total on the bound first), `min >= 0` → `>= -1` (with no floor the total would
  have to be both over the ceiling and negative);
- the post-loop `partial !== null` → `===`: that retry cannot return null after a rule-2
  acceptance in a valid band (min - T <= max), and cannot change a rule-3 partial.
"""
import re, subprocess, shutil, os, sys, tempfile
SRC=os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DST=os.path.join(tempfile.mkdtemp(prefix='gp-mutants-'), 'repo')
if os.path.exists(DST): shutil.rmtree(DST)
shutil.copytree(SRC, DST, symlinks=True, ignore=shutil.ignore_patterns('.git'))
files=['src/service/budget/band.ts','src/service/budget/partners.ts']
tests=sorted('tests/unit/'+f for f in os.listdir(os.path.join(SRC,'tests/unit')) if f.startswith('budget_'))
ops=[('>=','>'),('<=','<'),('>','>='),('<','<='),('===','!=='),('!==','===')]
pat=re.compile(r'(===|!==|>=|<=|(?<![=>-])>(?!=)|(?<![<])<(?![=<]))')
results=[]
for f in files:
    path=f'{DST}/{f}'
    orig=open(path).read()
    lines=orig.split('\n')
    for i,line in enumerate(lines):
        s=line.strip()
        if s.startswith(('*', '//', '/*', 'import')): continue
        for m in pat.finditer(line):
            op=m.group(1)
            # skip generics/arrows
            if op in ('<','>') and (re.match(r'\s*[A-Z]', line[m.end():]) or line[m.start()-1:m.start()].isalpha() and op=='<' and line[m.end():m.end()+1].isalpha()): continue
            repl={'>=':'>','<=':'<','>':'>=','<':'<=','===':'!==','!==':'==='}[op]
            mut=line[:m.start()]+repl+line[m.end():]
            results.append((f,i+1,op,repl,mut))
        # shift numeric limits in comparisons by one
        for m in re.finditer(r'(>=|<=|>|<|===)\s*(-?\d+)\b', line):
            n=int(m.group(2))
            for d in (1,-1):
                mut=line[:m.start(2)]+str(n+d)+line[m.end(2):]
                results.append((f,i+1,m.group(0),m.group(1)+' '+str(n+d),mut))
survivors=[]; killed=0; total=0
for (f,ln,op,repl,mut) in results:
    path=f'{DST}/{f}'
    orig=open(f'{SRC}/{f}').read()
    L=orig.split('\n'); L[ln-1]=mut
    open(path,'w').write('\n'.join(L))
    r=subprocess.run(['deno','test','-P=test','--no-check','--quiet',*tests],cwd=DST,capture_output=True,text=True,timeout=120)
    total+=1
    if r.returncode==0: survivors.append((f,ln,op,repl,mut.strip()))
    else: killed+=1
    open(path,'w').write(orig)
shutil.rmtree(os.path.dirname(DST))
print(f'mutants {total} killed {killed} survived {len(survivors)}')
for s in survivors: print('SURVIVED',s)
