/** Scores of simulations (TDB's scoring.py and attention_head_scoring.py) and summaries of score lists. */

/** Pearson correlation (np.corrcoef); 0 when undefined (a constant input), as TDB's correlation_score. */
export function correlation(real: readonly number[], predicted: readonly number[]): number {
  const n = real.length;
  if (n !== predicted.length)
    throw new Error(`correlation: ${n} real values but ${predicted.length} predicted`);
  if (n === 0) return 0;
  let meanR = 0;
  let meanP = 0;
  for (let i = 0; i < n; i++) {
    meanR += real[i];
    meanP += predicted[i];
  }
  meanR /= n;
  meanP /= n;
  let sRP = 0;
  let sRR = 0;
  let sPP = 0;
  for (let i = 0; i < n; i++) {
    const r = real[i] - meanR;
    const p = predicted[i] - meanP;
    sRP += r * p;
    sRR += r * r;
    sPP += p * p;
  }
  const score = sRP / Math.sqrt(sRR * sPP);
  return Number.isFinite(score) ? Math.max(-1, Math.min(1, score)) : 0;
}

/** 1 − mean((r − p)²) / mean(r²) (TDB's rsquared_score_from_sequences; NaN when every r is 0). */
export function rSquared(real: readonly number[], predicted: readonly number[]): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < real.length; i++) {
    num += (real[i] - predicted[i]) ** 2;
    den += real[i] ** 2;
  }
  return 1 - num / den;
}

/** 1 − mean|r − p| / mean|r| (TDB's absolute_dev_explained_score_from_sequences). */
export function absoluteDeviationExplained(real: readonly number[], predicted: readonly number[]): number {
  let num = 0;
  let den = 0;
  for (let i = 0; i < real.length; i++) {
    num += Math.abs(real[i] - predicted[i]);
    den += Math.abs(real[i]);
  }
  return 1 - num / den;
}

/**
 * Area under the ROC curve of `scores` for binary `labels` (1 = positive), ties counted half (as
 * sklearn's roc_auc_score); null when only one class is present (sklearn raises there).
 */
export function rocAuc(labels: readonly number[], scores: readonly number[]): number | null {
  if (labels.length !== scores.length) throw new Error("rocAuc: labels and scores differ in length");
  const order = scores.map((s, i) => ({ s, positive: labels[i] === 1 })).sort((a, b) => a.s - b.s);
  // Mann–Whitney U from average ranks.
  let positives = 0;
  let rankSum = 0;
  for (let i = 0; i < order.length; ) {
    let j = i;
    while (j < order.length && order[j].s === order[i].s) j++;
    const averageRank = (i + 1 + j) / 2;
    for (let k = i; k < j; k++) {
      if (order[k].positive) {
        positives++;
        rankSum += averageRank;
      }
    }
    i = j;
  }
  const negatives = order.length - positives;
  if (positives === 0 || negatives === 0) return null;
  return (rankSum - (positives * (positives + 1)) / 2) / (positives * negatives);
}

/** Linear-interpolated quantile of sorted values (numpy's default method). */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return Number.NaN;
  const position = q * (sorted.length - 1);
  const low = Math.floor(position);
  const high = Math.min(low + 1, sorted.length - 1);
  return sorted[low] + (sorted[high] - sorted[low]) * (position - low);
}

export interface ScoreSummary {
  count: number;
  /** Components without a score (never active, or unscorable). */
  unscored: number;
  mean: number;
  min: number;
  q10: number;
  q25: number;
  median: number;
  q75: number;
  q90: number;
  max: number;
  /** Share of the scored components above 0.3 and above 0.5. */
  above03: number;
  above05: number;
}

export function summarizeScores(scores: readonly (number | null)[]): ScoreSummary {
  const values = scores.filter((s): s is number => s !== null && Number.isFinite(s)).sort((a, b) => a - b);
  const n = values.length;
  const mean = n > 0 ? values.reduce((a, b) => a + b, 0) / n : Number.NaN;
  return {
    count: scores.length,
    unscored: scores.length - n,
    mean,
    min: n > 0 ? values[0] : Number.NaN,
    q10: quantile(values, 0.1),
    q25: quantile(values, 0.25),
    median: quantile(values, 0.5),
    q75: quantile(values, 0.75),
    q90: quantile(values, 0.9),
    max: n > 0 ? values[n - 1] : Number.NaN,
    above03: n > 0 ? values.filter((v) => v > 0.3).length / n : Number.NaN,
    above05: n > 0 ? values.filter((v) => v > 0.5).length / n : Number.NaN,
  };
}
