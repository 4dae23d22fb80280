/**
 * A tiny inline SVG chart: one line of power per device over the run's time,
 * scaled to the highest reading. A device with a single reading so far (the
 * first second of a run, a very short cell) is drawn as a flat line.
 */
import { ISample } from './api';

const SVG = 'http://www.w3.org/2000/svg';

/** Draw `samples` into `svg` (viewBox width x height); returns the device ids in colour order. */
export function drawSparkline(
  svg: SVGSVGElement,
  samples: ISample[],
  width = 240,
  height = 48
): string[] {
  svg.setAttribute('viewBox', `0 0 ${width} ${height}`);
  svg.replaceChildren();
  const points = samples.filter(s => s.power_w !== null);
  const devices = [...new Set(points.map(s => s.device_id))];
  if (!points.length) {
    return devices;
  }
  const t0 = points[0].t_s;
  const span = Math.max(points[points.length - 1].t_s - t0, 1e-9);
  const top = Math.max(...points.map(s => s.power_w as number), 1e-9);
  devices.forEach((device, index) => {
    const line = document.createElementNS(SVG, 'polyline');
    const coords = points
      .filter(s => s.device_id === device)
      .map(s => {
        const x = ((s.t_s - t0) / span) * width;
        const y = height - 1 - ((s.power_w as number) / top) * (height - 2);
        return [x, y];
      });
    if (coords.length === 1) {
      coords.push([width, coords[0][1]]);
      coords[0] = [0, coords[0][1]];
    }
    line.setAttribute(
      'points',
      coords.map(([x, y]) => `${x.toFixed(1)},${y.toFixed(1)}`).join(' ')
    );
    line.setAttribute('class', `cj-line cj-color-${index % 4}`);
    svg.appendChild(line);
  });
  return devices;
}
