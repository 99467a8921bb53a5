#!/usr/bin/env bash
# Regenerate the committed reports. Run from the repository root.
#   bash reports/regenerate.sh published   # score the published ABO outputs in ../shared/fixtures (about 2 min)
#   bash reports/regenerate.sh default     # the README's main job on the synthetic data set
#   bash reports/regenerate.sh stnn        # shipped STNeuroNet weights on the synthetic test split (about 2 min)
#   bash reports/regenerate.sh peers       # default vs tuned peers on synthetic and synthetic-neurofinder (CaImAn
#                                          # configured by `bench setup caiman`; about 2 h on 2 cores);
#                                          # `peers synthetic` one data set, PEERS_HNCCORR=0 without HNCcorr
#   bash reports/regenerate.sh tables      # only redraw every report from its committed results table
set -euo pipefail
cd "$(dirname "$0")/.."
what=${1:-tables}
F=../shared/fixtures/abo275
published() {
  local rule=$1
  BENCH_PUBLISHED_ABO275=$F python -m bench run --dataset abo275-published --tune none --split all --rule "$rule" \
    --methods "STNeuroNet=files:$F/ST_{recording}.mat,SUNS=files:$F/SUNS_{recording}.mat,SUNS-online=files:$F/SUNSO_{recording}.mat,Suite2p=files:$F/S2P_{recording}.mat,CaImAn-Batch=files:$F/CB_{recording}.mat,CaImAn-Online=files:$F/CO_{recording}.mat" \
    --out "reports/abo275-published-$rule" --force --quiet
}
case "$what" in
  published) published stnn; published suns ;;
  default) python -m bench run --out reports/synthetic --force ;;
  stnn) python -m bench run --dataset synthetic --methods stnn --tune none --split test --out reports/synthetic-stnn --force --quiet ;;
  peers)
    # bash reports/regenerate.sh peers [DATASET ...]; PEERS_HNCCORR=0 leaves HNCcorr's runs out (hours on CPU).
    m=suite2p,caiman-batch,caiman-online,stnn,unet2ds
    shift
    sets=${*:-synthetic synthetic-neurofinder}
    for ds in $sets; do
      # CaImAn Online's tuning (three OnACID runs per recording) is left out on synthetic-neurofinder for time.
      loo=$m; [ "$ds" = synthetic-neurofinder ] && loo=suite2p,caiman-batch,stnn,unet2ds
      python -m bench run --dataset $ds --methods $loo --tune loo --out runs/peers-$ds --force --quiet
      mkdir -p reports/peers/$ds-loo && cp runs/peers-$ds/results.csv reports/peers/$ds-loo/
      python -m bench report reports/peers/$ds-loo --out reports/peers/$ds-loo/report
      python -m bench run --dataset $ds --methods $m --tune none --out runs/peers-$ds --resume --quiet
      mkdir -p reports/peers/$ds-default && cp runs/peers-$ds/results.csv reports/peers/$ds-default/
      python -m bench report reports/peers/$ds-default --out reports/peers/$ds-default/report
      # HNCcorr apart (named, since its time model keeps it out of 'all'); tuned only where it fits (~45 min).
      tunes=none; [ "$ds" = synthetic-neurofinder ] && tunes="none loo"
      [ "${PEERS_HNCCORR:-1}" = 0 ] && tunes=
      for t in $tunes; do
        name=hnccorr-$ds-$([ $t = none ] && echo default || echo loo)
        python -m bench run --dataset $ds --methods hnccorr --tune $t --out runs/$name --force --quiet
        mkdir -p reports/peers/$name && cp runs/$name/results.csv reports/peers/$name/
        python -m bench report reports/peers/$name --out reports/peers/$name/report
      done
    done ;;
  tables) for d in reports/*/; do [ -f "$d/results.csv" ] && python -m bench report "$d" --out "$d/report"; done ;;
  *) echo "usage: $0 published|default|stnn|peers|tables" >&2; exit 2 ;;
esac
