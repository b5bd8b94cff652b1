import { type ImgHTMLAttributes, useEffect, useState } from "react";
import { getToken, request } from "../api/client";

/** An image from the API: a plain <img> when no token is set; else fetched with the token (an <img> cannot send
 * one) and shown from a blob URL. */
export function AuthImage({ src, ...props }: ImgHTMLAttributes<HTMLImageElement> & { src: string }) {
  const token = getToken();
  const [blobUrl, setBlobUrl] = useState<string | null>(null);
  useEffect(() => {
    if (!token) return;
    let url: string | null = null;
    let live = true;
    void request(src)
      .then((response) => response.blob())
      .then((blob) => {
        if (!live) return;
        url = URL.createObjectURL(blob);
        setBlobUrl(url);
      })
      .catch(() => undefined);
    return () => {
      live = false;
      if (url) URL.revokeObjectURL(url);
    };
  }, [src, token]);
  return <img {...props} src={token ? (blobUrl ?? undefined) : src} />;
}
